"""Embedders for tests that need the embedding step to fail (restore resumption)."""


class BrokenEmbedder:
    name = "broken"
    dimension = 384

    def __init__(self, batch_size: int = 64, threads: int = 0):
        pass

    def embed(self, texts):
        raise RuntimeError("the embedder is broken (test)")
