import dataclasses

from bandit_core.data_contract import DataContract
from custom_components.bandit_schema_gen.component import BanditSchemaGenSpec
from custom_components.contract_parameters import CONTRACT_PARAMETERS
from custom_components.data_contract_gate.component import DataContractGateSpec


def test_the_parameters_are_the_contracts_fields_with_their_types():
    fields = {field.name: field.type for field in dataclasses.fields(DataContract)}
    assert {name: p.type for name, p in CONTRACT_PARAMETERS.items()} == fields


def test_every_component_checking_rows_takes_the_contract_the_same_way():
    for spec in (BanditSchemaGenSpec, DataContractGateSpec):
        assert {name: spec.PARAMETERS[name] for name in CONTRACT_PARAMETERS} == CONTRACT_PARAMETERS
