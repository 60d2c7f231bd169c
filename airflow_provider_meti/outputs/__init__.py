"""Extract writers: sources streamed page by page into a file or object-storage object.

``files`` opens a target so that it appears only complete (local or ``ObjectStoragePath``);
``features`` writes GeoJSON Features as NDJSON or one FeatureCollection; ``progress`` logs
how far a long listing has come.
"""
