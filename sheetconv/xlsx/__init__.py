"""Bytes in and out: the safely opened xlsx package and its cell readers, the workbook
writer, the metadata sheet, highlighted copies, atomic output files and recalculation with
LibreOffice and Gnumeric. Imports ``sheet`` and ``nn``, nothing above them."""
