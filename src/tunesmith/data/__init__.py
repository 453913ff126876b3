"""The data layer: read files, convert records to canonical examples, quarantine the rejects,
render chats and mask labels. Shapes are documented in docs/DEVELOPING.md."""

from tunesmith.data.formats import (
    FORMAT_FIELDS,
    PROBLEM_TYPES,
    RecordError,
    Reject,
    convert_records,
    convert_with_sources,
    to_alpaca,
    to_classification,
    to_kto,
    to_messages,
    to_ner,
    to_preference,
)
from tunesmith.data.inspect import inspection_report
from tunesmith.data.quarantine import Quarantine
from tunesmith.data.readers import (
    FORMATS,
    Record,
    detect_format,
    fingerprint_files,
    read_all,
    read_conll,
    read_records,
)
from tunesmith.data.render import (
    IGNORE_INDEX,
    NAMED_TEMPLATES,
    TokenizedExample,
    encode_prompt,
    length_summary,
    render_prompt,
    render_text,
    resolve_chat_template,
    tokenize_conversation,
    tokenize_dataset,
)

__all__ = [
    "FORMATS", "FORMAT_FIELDS", "IGNORE_INDEX", "NAMED_TEMPLATES", "PROBLEM_TYPES", "Quarantine",
    "Record", "RecordError", "Reject", "TokenizedExample", "convert_records",
    "convert_with_sources", "detect_format", "encode_prompt", "fingerprint_files",
    "inspection_report", "length_summary", "read_all", "read_conll", "read_records",
    "render_prompt", "render_text", "resolve_chat_template", "to_alpaca", "to_classification",
    "to_kto", "to_messages", "to_ner", "to_preference", "tokenize_conversation",
    "tokenize_dataset",
]
