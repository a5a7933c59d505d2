"""The runner's data layer: read, validate, report and convert fine-tuning and evaluation datasets.

Public API (training and evaluation call only these):

    load_records(source, fmt, *, strict=False, max_length=None, connection=None, task=None) -> LoadResult
        `source`: a local path, `s3://bucket/key` (with `connection`, else AWS_* environment
        variables) or an http(s) URL; at most `limits.max_upload_bytes` (100 MB, the console's upload
        limit, by default). `fmt`: a DataFormat or its name, any case. `task` "dpo": every record
        must be a preference pair (a ShareGPT conversation without chosen/rejected is skipped).
        Streams the file once to validate it. `LoadResult.report` is the ValidationReport
        (total, usable, skipped, counts_by_reason, examples, to_json(), to_text());
        `LoadResult.records` yields its usable records in order (from a spool on disk).
        Raises DataError (`.reason`, `.message`, `.report`) when the source cannot be read,
        nothing usable is left, or with strict=True anything was skipped. Close the result (or
        use `with`) to delete a downloaded copy.

    to_trl(records, fmt, task) -> Iterator[dict]
        task "sft" | "dpo" | "pretrain" | "eval": rows in TRL 1.x dataset shapes (see convert.py).
        Images come as loaded PIL images in an `images` column.

    to_hf_dataset(rows) -> datasets.Dataset
        Written through a generator, so memory stays flat.

Record indices in reports are 0-based positions in the file; reason codes are the `Reason` values.
"""

from kaizen_runner.data.convert import Task, to_hf_dataset, to_trl
from kaizen_runner.data.formats import DataFormat, FileType
from kaizen_runner.data.issues import DataError, Issue, Reason
from kaizen_runner.data.limits import Limits
from kaizen_runner.data.loader import LoadResult, load_records
from kaizen_runner.data.records import AlpacaRecord, ChatRecord, ImageRef, Message, Record, TextRecord
from kaizen_runner.data.report import ValidationReport

__all__ = [
    "AlpacaRecord",
    "ChatRecord",
    "DataError",
    "DataFormat",
    "FileType",
    "ImageRef",
    "Issue",
    "Limits",
    "LoadResult",
    "Message",
    "Reason",
    "Record",
    "Task",
    "TextRecord",
    "ValidationReport",
    "load_records",
    "to_hf_dataset",
    "to_trl",
]
