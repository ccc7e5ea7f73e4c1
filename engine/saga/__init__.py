"""The rotation saga (rotation.py) and what it drives: delivery, notifications, proof, the periodic pass."""
