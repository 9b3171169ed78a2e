"""The models of the progression as pure functions of (params, tokens): the bigram table, the MLP, microgpt's
transformer; their registry, initial parameters, loss and optimizers. Imports nothing of the runtime."""
