// ternd sample peers
