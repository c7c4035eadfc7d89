"""Shipped model weights (installed as `ruledsl.models`): `reasoner/` is the built-in video reasoner."""
