"""The corpus: where it comes from (names.txt ships in this folder), documents, tokenizers, the numpy path for
ASCII text."""
