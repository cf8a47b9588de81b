"""Work that spans files and models: training runs (and, later, importing models trained elsewhere)."""
