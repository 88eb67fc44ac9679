"""The catalogue as loaded: every product file (products.py) looked up by name or alias, and the files beside
them: rules/vocabulary.yaml (the closed lists a plan draws from), rules/class.yaml (what holds for every IVIG
product) and rules/guidelines.yaml (off-label regimens). Each loader names the file and field of any error.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..model.errors import RuleFileError, format_loc
from ..model.units import UnitError
from .codes import VocabularyCodes, check_vocabulary_codes
from .products import Cited, DoseRegimen, IndicationEntry, Kebab, Product, Text, _Strict
from .yamlio import load_yaml


class Catalogue:
    """All products, looked up by id or by any display name or alias (case and spacing ignored)."""

    def __init__(self, products: dict[str, Product]):
        self.products = products
        self._names: dict[str, str] = {}
        for product in products.values():
            for name in (product.id, product.name, *product.aliases):
                key = _name_key(name)
                if self._names.get(key, product.id) != product.id:
                    raise RuleFileError(f"products/{product.id}.yaml", product.id,
                                        f"name or alias {name!r} is already used by {self._names[key]}")
                self._names[key] = product.id

    def resolve(self, name: str) -> Product | None:
        product_id = self._names.get(_cached_name_key(name) if len(name) <= 100 else _name_key(name))
        return self.products.get(product_id) if product_id else None


def _name_key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


#: A product name is looked up for every plan, and an order file spells its products a few ways: the key of a
#: short name is worked out once.
_cached_name_key = lru_cache(maxsize=1024)(_name_key)


class ExcipientEntry(_Strict):
    """An excipient a product file may list; ``contraindicates`` names a risk factor that is a contraindication for
    every product containing it (sorbitol: hereditary fructose intolerance), whatever the product file says."""

    description: Text
    contraindicates: Kebab | None = None
    citation: str | None = None


class Vocabulary(_Strict):
    """The closed lists a plan may draw from (rules/vocabulary.yaml)."""

    indications: dict[Kebab, str]
    risk_factors: dict[Kebab, str]
    excipients: dict[Kebab, ExcipientEntry]
    codes: VocabularyCodes = VocabularyCodes()

    @field_validator("excipients", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"description": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _known(self) -> "Vocabulary":
        for name, entry in self.excipients.items():
            if entry.contraindicates is not None:
                if entry.contraindicates not in self.risk_factors:
                    raise ValueError(f"excipients.{name}.contraindicates: unknown risk factor {entry.contraindicates!r}")
                if not entry.citation:
                    raise ValueError(f"excipients.{name}: a contraindication needs its citation")
        check_vocabulary_codes(self.codes, self.indications, self.risk_factors)
        return self


class ClassStatement(Cited):
    risk_factor: Kebab


class ClassWarning(Cited):
    pass


class ClassKnowledge(_Strict):
    """What holds for every US IVIG product (rules/class.yaml): the class contraindications and the warnings every
    label carries. A product file cannot switch these off; its own wording, where it has it, is cited instead."""

    contraindications: Annotated[list[ClassStatement], Field(min_length=1)]
    warnings: dict[Kebab, ClassWarning]


class Guidelines(_Strict):
    """Regimens from national or provincial guidelines for off-label indications (rules/guidelines.yaml), used to
    check the dose of an order for an indication no label covers."""

    regimens: dict[Kebab, Annotated[list[DoseRegimen], Field(min_length=1)]]


def _load_model(model: type[BaseModel], path: Path, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{format_loc(e['loc']) or '(top)'}: {_message(e)}" for e in exc.errors())
        raise RuleFileError(str(path), None, problems) from None


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return ("missing: state this section explicitly (list its entries, or `none: true` with a citation); "
                "a missing section never means none")
    return str(error["msg"]).removeprefix("Value error, ")


def load_vocabulary(path: Path) -> Vocabulary:
    return _load_model(Vocabulary, path, load_yaml(path))


def load_class_knowledge(path: Path, vocabulary: Vocabulary) -> ClassKnowledge:
    knowledge: ClassKnowledge = _load_model(ClassKnowledge, path, load_yaml(path))
    for statement in knowledge.contraindications:
        if statement.risk_factor not in vocabulary.risk_factors:
            raise RuleFileError(str(path), statement.risk_factor, "unknown risk factor (see vocabulary.yaml)")
    return knowledge


def load_guidelines(path: Path, vocabulary: Vocabulary) -> Guidelines:
    guidelines: Guidelines = _load_model(Guidelines, path, load_yaml(path))
    for indication in guidelines.regimens:
        if indication not in vocabulary.indications:
            raise RuleFileError(str(path), indication, "unknown indication (see vocabulary.yaml)")
    return guidelines


def load_catalogue(folder: Path, vocabulary: Vocabulary) -> Catalogue:
    """Load and cross-check every product file: ids match file names, indications and risk factors are known."""
    products: dict[str, Product] = {}
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuleFileError(str(folder), None, "no product files (*.yaml) found")
    for path in files:
        product: Product = _load_model(Product, path, load_yaml(path))
        if product.id != path.stem:
            raise RuleFileError(str(path), product.id, f"product id must match the file name {path.stem!r}")
        if product.id in products:
            raise RuleFileError(str(path), product.id, "duplicate product id")
        for indication, entry in product.indications.items():
            if indication not in vocabulary.indications:
                raise RuleFileError(str(path), indication,
                                    f"unknown indication; known: {', '.join(vocabulary.indications)}")
            _check_rates(path, product, indication, entry)
        for excipient in product.excipient_list:
            if excipient.name not in vocabulary.excipients:
                raise RuleFileError(str(path), excipient.name, "unknown excipient (see vocabulary.yaml)")
        for statement in (*product.contraindication_list, *product.avoid):
            if statement.risk_factor not in vocabulary.risk_factors:
                raise RuleFileError(str(path), statement.risk_factor, "unknown risk factor (see vocabulary.yaml)")
        products[product.id] = product
    return Catalogue(products)


def _check_rates(path: Path, product: Product, indication: str, entry: IndicationEntry) -> None:
    try:
        initial = product.rate_mg_kg_min(entry.initial_rate.quantity)
        maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
        at_risk_figure = entry.at_risk_rate or product.at_risk_rate
        at_risk = product.rate_mg_kg_min(at_risk_figure.quantity) if at_risk_figure else None
        ladder = [product.rate_mg_kg_min(q) for q in (entry.titration.ladder if entry.titration else None) or []]
    except UnitError as exc:
        raise RuleFileError(str(path), indication, str(exc)) from None
    if not 0 < initial <= maximum:
        raise RuleFileError(str(path), indication, "initial_rate must be positive and not above max_rate")
    if at_risk is not None and not 0 < at_risk:
        raise RuleFileError(str(path), indication, "at_risk_rate must be positive")
    if ladder and (ladder != sorted(ladder) or ladder[-1] > maximum or ladder[0] <= 0):
        raise RuleFileError(str(path), indication,
                            "titration ladder must climb, stay positive and end at or below max_rate")
