"""The data contract's fields as TFX component parameters, declared once.

Every component that checks rows against `bandit_core.data_contract.DataContract`
takes the same parameters, so the compiled pipeline carries the contract the
same way into each step.
"""

from typing import Dict

from tfx.types.component_spec import ExecutionParameter

CONTRACT_PARAMETERS: Dict[str, ExecutionParameter] = {
    "observation_dim": ExecutionParameter(type=int),
    "num_actions": ExecutionParameter(type=int),
    "reward_min": ExecutionParameter(type=float),
    "reward_max": ExecutionParameter(type=float),
    "min_propensity": ExecutionParameter(type=float),
    # 0, the classic problem, where there are no arm features.
    "arm_dim": ExecutionParameter(type=int, optional=True),
}
