"""Dependencies from any workbook's formulas: references found with openpyxl's tokenizer
(defined names, structured references, shape cache) and the streaming precedent index."""
