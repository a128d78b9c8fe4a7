"""Counting a prior's network evaluations, for the benchmarks' NFE column."""

from __future__ import annotations


class CountingPrior:
    """A prior seen through a counter of its network evaluations (``calls``: one per batched call of
    Tweedie's estimate ``eps_and_x0``, a generator's ``decode`` or a density's ``image_score``, and one
    per pixel pass of a PixelCNN's ``sample_conditional``, whose callback comes once per row). It has exactly the prior's attributes."""

    COUNTED = ("eps_and_x0", "decode", "image_score")

    def __init__(self, prior):
        self._prior = prior
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(self._prior, name)
        if name == "sample_conditional":
            def passes(*args, callback=None, **kwargs):
                def count(info):
                    self.calls += self._prior.image_shape[-1]  # one call per row drawn: a pass per pixel
                    if callback is not None:
                        callback(info)

                return attr(*args, callback=count, **kwargs)

            return passes
        if name not in self.COUNTED:
            return attr

        def counted(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)

        return counted
