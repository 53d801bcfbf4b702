"""Feature maps of the per-arm problem: one user, C candidate movies per round.

Each round has global features u (the user, dimension dg) and per-arm
features v_c for every candidate c (the movie, dimension da). TF-Agents'
per-arm linear agents score candidate c by theta . [u, v_c], the
concatenation, which can only learn a user bias plus a movie popularity. The
expected reward of the MovieLens per-arm problem is bilinear, u Sigma v^T,
which is linear in the outer product u (x) v:

    u Sigma v^T = sum_ij Sigma_ij u_i v_j = vec(Sigma) . interaction(u, v)

Serving and training both call these maps, so a policy always sees the
features it was trained on. Every map takes either all candidates of a round,
`arm_features` of shape [N, C, da], or one arm per round (e.g. the logged
chosen arm), shape [N, da].
"""

import numpy as np

from bandit_core import agent_names


def _checked(global_features: np.ndarray, arm_features: np.ndarray):
    """Both inputs as arrays of one float dtype, after checking their shapes."""
    u = np.asarray(global_features)
    v = np.asarray(arm_features)
    if u.ndim != 2 or v.ndim not in (2, 3) or v.shape[0] != u.shape[0]:
        raise ValueError(
            f"expected global features [N, dg] and arm features [N, C, da] or [N, da]; got "
            f"{u.shape} and {v.shape}"
        )
    dtype = np.result_type(u.dtype, v.dtype, np.float32)
    return u.astype(dtype, copy=False), v.astype(dtype, copy=False)


def concatenated(global_features: np.ndarray, arm_features: np.ndarray) -> np.ndarray:
    """[u, v] per arm: the context a TF-Agents per-arm linear agent builds.

    Args:
      global_features: [N, dg] the user of each round.
      arm_features: [N, C, da] each round's candidates, or [N, da] one arm per
        round.

    Returns:
      [N, C, dg + da] (or [N, dg + da]): the global features first, then the
      arm's.
    """
    u, v = _checked(global_features, arm_features)
    per_arm = u[:, None, :] if v.ndim == 3 else u
    tiled = np.broadcast_to(per_arm, v.shape[:-1] + u.shape[1:])
    return np.concatenate([tiled, v], axis=-1)


def interaction(global_features: np.ndarray, arm_features: np.ndarray) -> np.ndarray:
    """The flattened outer product u (x) v per arm.

    Entry `i * da + j` is `u_i * v_j`: the row-major flattening of the
    [dg, da] matrix `u v^T`, which is `np.kron(u, v)`.

    Args:
      global_features: [N, dg] the user of each round.
      arm_features: [N, C, da] each round's candidates, or [N, da] one arm per
        round.

    Returns:
      [N, C, dg * da] (or [N, dg * da]).
    """
    u, v = _checked(global_features, arm_features)
    outer = np.einsum("ni,n...j->n...ij", u, v)
    return outer.reshape(v.shape[:-1] + (u.shape[1] * v.shape[-1],))


def policy_arm_features(
    agent: str, global_features: np.ndarray, arm_features: np.ndarray
) -> np.ndarray:
    """The per-arm features `agent`'s policy observes for the given arms.

    The Interaction agents observe `interaction(u, v)`; every other per-arm
    agent observes the movie features v unchanged.

    Args:
      agent: one of `agent_names.PER_ARM_AGENTS`.
      global_features: [N, dg] the user of each round.
      arm_features: [N, C, da] each round's candidates, or [N, da] one arm per
        round.

    Returns:
      [N, C, da'] (or [N, da']), where da' is dg * da for the Interaction
      agents and da otherwise.
    """
    if agent not in agent_names.PER_ARM_AGENTS:
        raise ValueError(
            f"{agent!r} is not a per-arm agent; choose one of {agent_names.PER_ARM_AGENTS}"
        )
    if agent in agent_names.INTERACTION_AGENTS:
        return interaction(global_features, arm_features)
    return _checked(global_features, arm_features)[1]


def linear_contexts(
    agent: str, global_features: np.ndarray, arm_features: np.ndarray
) -> np.ndarray:
    """The contexts x of a per-arm linear agent: [u, policy arm features].

    Args:
      agent: one of `agent_names.PER_ARM_LINEAR_AGENTS`.
      global_features: [N, dg] the user of each round.
      arm_features: [N, C, da] each round's candidates, or [N, da] one arm per
        round.

    Returns:
      [N, C, d] (or [N, d]) with d = dg + da' (see `policy_arm_features`), the
      vectors whose statistics the agent keeps and that its policy scores.
    """
    if agent not in agent_names.PER_ARM_LINEAR_AGENTS:
        raise ValueError(
            f"{agent!r} is not a per-arm linear agent; choose one of "
            f"{agent_names.PER_ARM_LINEAR_AGENTS}"
        )
    return concatenated(
        global_features, policy_arm_features(agent, global_features, arm_features)
    )
