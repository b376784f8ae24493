"""maskgate: face access control at the gate, masks on, images never kept."""

__version__ = "0.1.0"
