"""`paftrace record` files and the `paftrace report` built from them.

recording: the file format (gzip JSON Lines, readable when cut short);
recorder: the extra records a recording carries beside the tracer's stream;
model: records -> the report's data (pure); verdict: the explain advice per call site;
html / markdown: the two presentations of one model.
"""
