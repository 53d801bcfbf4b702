"""The agents this project trains, by the names used in settings, sidecars and reports."""

LINUCB = "LinUCB"
LINTS = "LinTS"
NEURAL_EPSILON_GREEDY = "NeuralEpsilonGreedy"
NEURAL_LINUCB = "NeuralLinUCB"
LINEAR_AGENTS = (LINUCB, LINTS)
NEURAL_AGENTS = (NEURAL_EPSILON_GREEDY, NEURAL_LINUCB)
AGENTS = LINEAR_AGENTS + NEURAL_AGENTS
