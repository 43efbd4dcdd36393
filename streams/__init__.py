"""Records, Kafka source and sink, windowing, the embedded broker and dataset loaders.

``streams`` never imports ``monitor`` or ``models``.
"""
