"""The agents this project trains, by the names used in settings, sidecars and reports."""

LINUCB = "LinUCB"
LINTS = "LinTS"
NEURAL_EPSILON_GREEDY = "NeuralEpsilonGreedy"
NEURAL_LINUCB = "NeuralLinUCB"
LINEAR_AGENTS = (LINUCB, LINTS)
NEURAL_AGENTS = (NEURAL_EPSILON_GREEDY, NEURAL_LINUCB)
AGENTS = LINEAR_AGENTS + NEURAL_AGENTS

# Per-arm agents: each round one user (global features) and C candidate movies
# (per-arm features). The Interaction agents see each candidate as the outer
# product of the user's and the movie's features (`per_arm_features.interaction`).
PER_ARM_LINUCB = "PerArmLinUCB"
PER_ARM_LINTS = "PerArmLinTS"
INTERACTION_LINUCB = "InteractionLinUCB"
INTERACTION_LINTS = "InteractionLinTS"
PER_ARM_NEURAL_EPSILON_GREEDY = "PerArmNeuralEpsilonGreedy"
PER_ARM_NEURAL_LINUCB = "PerArmNeuralLinUCB"
DOT_PRODUCT_EPSILON_GREEDY = "DotProductEpsilonGreedy"
INTERACTION_AGENTS = (INTERACTION_LINUCB, INTERACTION_LINTS)
PER_ARM_LINEAR_AGENTS = (PER_ARM_LINUCB, PER_ARM_LINTS) + INTERACTION_AGENTS
PER_ARM_NEURAL_AGENTS = (
    PER_ARM_NEURAL_EPSILON_GREEDY,
    PER_ARM_NEURAL_LINUCB,
    DOT_PRODUCT_EPSILON_GREEDY,
)
PER_ARM_AGENTS = PER_ARM_LINEAR_AGENTS + PER_ARM_NEURAL_AGENTS
