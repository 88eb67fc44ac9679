"""Code lists: how coded data (FHIR codings of products, conditions, observations and medications) maps onto the
rule set's names. The lists are data in rules/ (product files, vocabulary.yaml) and in a site's own mapping file,
each list with its citation; this module validates them at load and answers look-ups.

Why each system matches the way it does:
- ICD-10-CM is a strict hierarchy spelt in its codes, so a listed category matches every code under it (``M33.1``
  matches ``M33.11``). A pharmacist lists categories, not every leaf.
- SNOMED CT, LOINC and RxNorm codes carry no hierarchy in their spelling (that needs a terminology server), so they
  match exactly: a list names every concept it means.
- ATC codes are hierarchical prefixes (``G03C`` estrogens), like ICD-10-CM.
- NDCs are printed in three 10-digit shapes (4-4-2, 5-3-2, 5-4-1) and sent as 11 digits (5-4-2) or hyphenated;
  both sides are normalised to 5-4-2 first. A two-segment (product) NDC matches every package of the product.
- ``text`` is the last resort for medications written without a code: a case-insensitive whole-word match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..model.errors import RuleFileError, format_loc
from .yamlio import load_yaml

#: Names in the rule files (products.py uses the same pattern; this module sits below it, products import it).
Kebab = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

#: The short names rule files use for the code systems FHIR names by URI.
SYSTEM_URIS: dict[str, str] = {
    "ndc": "http://hl7.org/fhir/sid/ndc",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "icd-10-cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "snomed-ct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "atc": "http://www.whocc.no/atc",
}
_URI_NAMES = {uri: name for name, uri in SYSTEM_URIS.items()}
#: Other spellings of the same systems seen in EHR exports.
_URI_NAMES.update({
    "urn:oid:2.16.840.1.113883.6.69": "ndc", "urn:oid:2.16.840.1.113883.6.88": "rxnorm",
    "urn:oid:2.16.840.1.113883.6.90": "icd-10-cm", "urn:oid:2.16.840.1.113883.6.96": "snomed-ct",
    "urn:oid:2.16.840.1.113883.6.1": "loinc", "urn:oid:2.16.840.1.113883.6.73": "atc",
    "http://snomed.info/sct/": "snomed-ct", "https://loinc.org": "loinc",
})
TEXT = "text"
_HIERARCHICAL = {"icd-10-cm", "atc"}
#: Where each kind of observation the FHIR mapping reads is listed (vocabulary.yaml, codes.observations).
OBSERVATIONS = ("body-weight", "body-height", "egfr")


def system_name(uri: str | None) -> str | None:
    """The rule files' short name for a FHIR ``system`` URI (or the URI itself, for a site's local system)."""
    if uri is None:
        return None
    return _URI_NAMES.get(uri.strip(), uri.strip())


def normalise(system: str, code: str) -> str:
    """A code as it is compared: ICD-10-CM and ATC upper-case without dots, NDC as 5-4-2 digits, text lower-case."""
    code = code.strip()
    if system in _HIERARCHICAL:
        return code.upper().replace(".", "")
    if system == "ndc":
        return _ndc(code) or code
    if system == TEXT:
        return " ".join(code.lower().split())
    return code


def _ndc(code: str) -> str | None:
    """An NDC as 11 digits (5-4-2), or 9 digits (5-4) for a product code; None when its shape is ambiguous."""
    parts = code.split("-")
    if len(parts) in (2, 3) and all(p.isdigit() for p in parts):
        widths = (5, 4, 2)[:len(parts)]
        if all(len(p) <= w for p, w in zip(parts, widths, strict=True)):
            return "".join(p.zfill(w) for p, w in zip(parts, widths, strict=True))
        return None
    if code.isdigit() and len(code) in (9, 11):
        return code
    return None  # 10 digits without hyphens could be 4-4-2, 5-3-2 or 5-4-1


def ndc_readings(code: str) -> list[str]:
    """Every 5-4-2 reading of an NDC as sent: one for hyphenated or 11-digit codes, up to three for 10 digits."""
    code = code.strip()
    if (normal := _ndc(code)) is not None:
        return [normal]
    if code.isdigit() and len(code) == 10:
        return [f"0{code[:4]}{code[4:]}", f"{code[:5]}0{code[5:]}", f"{code[:9]}0{code[9:]}"]
    return []


class CodeList(_Strict):
    """Codes of one system that mean one name, with where they come from. ``tag`` (product files): L printed on the
    label or its SPL, S from a code registry or index (openFDA, RxNav)."""

    system: Annotated[str, Field(min_length=2)]
    values: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=1)]
    citation: Annotated[str, Field(min_length=10)]
    tag: Literal["L", "S"] | None = None

    @field_validator("system")
    @classmethod
    def _system(cls, value: str) -> str:
        if value in SYSTEM_URIS or value == TEXT:
            return value
        if re.match(r"^(https?://|urn:)\S+$", value):
            return system_name(value) or value  # a URI: a site's local code system, or a known system's URI
        raise ValueError(f"unknown code system {value!r}; use one of {', '.join([*SYSTEM_URIS, TEXT])} or a "
                         "system URI (a site's local codes)")

    @field_validator("values", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value


def _check_ndcs(lists: Iterable[CodeList]) -> None:
    for codes in lists:
        if codes.system == "ndc":
            for value in codes.values:
                if _ndc(value) is None:
                    raise ValueError(f"NDC {value!r} must be written hyphenated as printed (e.g. 68982-850-01) "
                                     "or as 11 digits")


class VocabularyCodes(_Strict):
    """vocabulary.yaml's ``codes`` section (and a site's additions): per indication, risk factor, observation kind
    and co-medication risk factor, the code lists that mean it."""

    indications: dict[Kebab, list[CodeList]] = {}
    risk_factors: dict[Kebab, list[CodeList]] = {}
    observations: dict[Literal["body-weight", "body-height", "egfr"], list[CodeList]] = {}
    medications: dict[Kebab, list[CodeList]] = {}


class SiteCodes(VocabularyCodes):
    """A site's mapping file: its local medication codes per product, and additions to the vocabulary's lists."""

    name: Annotated[str, Field(min_length=3)]
    products: dict[Kebab, list[CodeList]] = {}


#: (system, normalised code) -> the names it means. Products, indications and observation kinds: one name per code;
#: risk factors and co-medication: a code may mean several (monoclonal gammopathy: hyperviscosity and paraproteinemia).
Table = dict[tuple[str, str], tuple[str, ...]]


@dataclass
class CodeIndex:
    """Look-up tables built once from the product files, the vocabulary and an optional site file."""

    products: Table = field(default_factory=dict)
    product_ndcs: dict[str, str] = field(default_factory=dict)  # 9-digit product NDC -> product id
    indications: Table = field(default_factory=dict)
    risk_factors: Table = field(default_factory=dict)
    observations: Table = field(default_factory=dict)
    medications: Table = field(default_factory=dict)
    medication_words: dict[str, str] = field(default_factory=dict)
    site: str | None = None

    def product(self, system: str, code: str) -> set[str]:
        """Product ids a coding names (more than one only when a 10-digit NDC reads several ways)."""
        if system == "ndc":
            found: set[str] = set()
            for reading in ndc_readings(code):
                found.update(self.products.get(("ndc", reading), ()))
                if hit := self.product_ndcs.get(reading[:9]):
                    found.add(hit)
            return found
        return set(self.products.get((system, code.strip()), ()))

    def lookup(self, table: Table, system: str | None, code: str | None) -> tuple[str, ...]:
        """The names a coding means in one table. Hierarchical systems: in a one-name table the longest listed
        prefix wins (a specific code overrides its category); in a many-name table every listed prefix counts."""
        if not system or not code:
            return ()
        key = normalise(system, code)
        if system not in _HIERARCHICAL:
            return table.get((system, key), ())
        names: list[str] = []
        for end in range(len(key), 0, -1):
            for name in table.get((system, key[:end]), ()):
                if name not in names:
                    names.append(name)
            if names and not self.many_names(table):
                break
        return tuple(names)

    def many_names(self, table: Table) -> bool:
        """Whether a code in this table may mean several names (the risk-factor and co-medication tables)."""
        return table is self.risk_factors or table is self.medications

    def medication_word(self, text: str) -> str | None:
        words = f" {' '.join(re.findall(r'[a-z0-9]+', text.lower()))} "
        for phrase, name in self.medication_words.items():
            if f" {phrase} " in words:
                return name
        return None


def build_index(product_codes: dict[str, list[CodeList]], vocabulary_codes: VocabularyCodes,
                site: SiteCodes | None = None, site_path: str | None = None) -> CodeIndex:
    """Join every code list into look-up tables; a code that would name two products, two indications or two kinds
    of observation is a load error naming the file."""
    index = CodeIndex(site=site.name if site else None)

    def add(origin: str, table: Table, name: str, codes: CodeList) -> None:
        for value in codes.values:
            key = (codes.system, normalise(codes.system, value))
            names = table.get(key, ())
            if names and name not in names and not index.many_names(table):
                raise RuleFileError(origin, name, f"{codes.system} code {value!r} already means {names[0]!r}")
            if name not in names:
                table[key] = (*names, name)
            if table is index.products and codes.system == "ndc" and len(key[1]) == 9:
                if index.product_ndcs.get(key[1], name) != name:
                    raise RuleFileError(origin, name, f"NDC {value!r} already means {index.product_ndcs[key[1]]!r}")
                index.product_ndcs[key[1]] = name

    sources: list[tuple[str, VocabularyCodes, dict[str, list[CodeList]]]] = [
        ("rules", vocabulary_codes, product_codes)]
    if site is not None:
        sources.append((site_path or site.name, site, site.products))
    for origin, vocabulary, products in sources:
        for product_id, lists in products.items():
            for codes in lists:
                add(origin, index.products, product_id, codes)
        for table, section in ((index.indications, vocabulary.indications),
                               (index.risk_factors, vocabulary.risk_factors),
                               (index.observations, vocabulary.observations),
                               (index.medications, vocabulary.medications)):
            for name, lists in section.items():
                for codes in lists:
                    if codes.system == TEXT and table is index.medications:
                        for value in codes.values:
                            index.medication_words[normalise(TEXT, value)] = name
                    else:
                        add(origin, table, name, codes)
    return index


def check_vocabulary_codes(codes: VocabularyCodes, indications: Iterable[str], risk_factors: Iterable[str]) -> None:
    """Every name a code list maps to must be in the vocabulary (raises ValueError naming it)."""
    known_indications, known_risks = set(indications), set(risk_factors)
    for section, names, known, where in (("indications", codes.indications, known_indications, "indications"),
                                         ("risk_factors", codes.risk_factors, known_risks, "risk_factors"),
                                         ("medications", codes.medications, known_risks, "risk_factors")):
        for name in names:
            if name not in known:
                raise ValueError(f"codes.{section}.{name}: not a name in vocabulary.yaml's {where}")
    for lists in (*codes.indications.values(), *codes.risk_factors.values(), *codes.observations.values(),
                  *codes.medications.values()):
        _check_ndcs(lists)


def load_site_codes(path: Path, indications: Iterable[str], risk_factors: Iterable[str],
                    products: Iterable[str]) -> SiteCodes:
    """A site's mapping file (``--site-codes``), validated like the rule files: every error names file and entry."""
    data = load_yaml(path)
    try:
        site = SiteCodes.model_validate(data)
        check_vocabulary_codes(site, indications, risk_factors)
        for product_id, lists in site.products.items():
            if product_id not in set(products):
                raise ValueError(f"products.{product_id}: unknown product id")
            _check_ndcs(lists)
    except ValidationError as exc:
        problems = "; ".join(f"{format_loc(e['loc']) or '(top)'}: {str(e['msg']).removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise RuleFileError(str(path), None, problems) from None
    except ValueError as exc:
        raise RuleFileError(str(path), None, str(exc)) from None
    return site
