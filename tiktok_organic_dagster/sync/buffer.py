"""The page buffer of a full sync: a listing held compactly until its commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa

from tiktok_organic_dagster.sync.records import concat, records_to_table

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd", use_threads=False)


class ChunkBuffer:
    """A listing held compactly until its commit: records -> Arrow chunks -> zstd-compressed IPC buffers.

    Why: a full sync must finish paging before it writes (an API failure then leaves the tables
    untouched), yet 100k videos are ~90 MB as Arrow (~175 MB as Python dicts). Each chunk of ``chunk_rows``
    records is converted and compressed at once (~8 MB per 100k videos; LZ4 was twice that), and only the
    narrow ``summary`` columns (key, counters, bookkeeping, preview) stay uncompressed for checks, history and
    metadata.
    ``reader()`` streams the chunks back for the write and can be called again (a commit retry replays it).
    Chunks may differ in schema (a new API field); ``schema`` unifies them, missing columns become null.
    """

    DEFAULT_CHUNK_ROWS = 2000

    def __init__(self, fields: dict[str, pa.DataType], extra: dict[str, object], summary: Sequence[str],
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.fields, self.extra, self.chunk_rows = fields, extra, chunk_rows
        self._summary_columns = tuple(summary)
        self._pending: list[dict] = []
        self._chunks: list[pa.Buffer] = []
        self._schemas: list[pa.Schema] = []
        self._summaries: list[pa.Table] = []
        self.rows = 0

    def extend(self, records: Iterable[dict]) -> None:
        self._pending.extend(records)
        if len(self._pending) >= self.chunk_rows:
            self._flush()

    def finish(self) -> None:
        """Convert what is pending (an empty listing still yields one empty chunk, for its schema)."""
        if self._pending or not self._chunks:
            self._flush()

    def absorb(self, other: ChunkBuffer) -> None:
        """Append ``other``'s rows after this buffer's (time slices are joined newest first, so the files the
        overwrite writes still cover create_time ranges)."""
        if self._pending:
            self._flush()
        if other._pending:
            other._flush()
        self._chunks += other._chunks
        self._schemas += other._schemas
        self._summaries += other._summaries
        self.rows += other.rows
        other._chunks, other._schemas, other._summaries, other.rows = [], [], [], 0

    def _flush(self) -> None:
        table = records_to_table(self._pending, self.fields, self.extra)
        self._pending = []
        self.rows += table.num_rows
        self._schemas.append(table.schema)
        self._summaries.append(table.select([c for c in self._summary_columns if c in table.column_names]))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
            writer.write_table(table)
        self._chunks.append(sink.getvalue())

    @property
    def schema(self) -> pa.Schema:
        return pa.unify_schemas(self._schemas, promote_options="permissive")

    def summary(self) -> pa.Table:
        """The summary columns of every row (what checks, history rows and metadata read)."""
        out = concat(self._summaries)
        assert out is not None, "finish() first"
        self._summaries = [out]  # the pieces are not kept beside their concatenation (it may copy)
        return out

    def batches(self, schema: pa.Schema | None = None) -> Iterator[pa.RecordBatch]:
        schema = schema or self.schema
        for chunk in self._chunks:
            table = pa.ipc.open_stream(chunk).read_all()
            if not table.schema.equals(schema):
                columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                           else pa.nulls(table.num_rows, f.type) for f in schema]
                table = pa.Table.from_arrays(columns, schema=schema)
            yield from table.to_batches()

    def reader(self) -> pa.RecordBatchReader:
        schema = self.schema
        return pa.RecordBatchReader.from_batches(schema, self.batches(schema))

    def table(self) -> pa.Table:
        schema = self.schema
        return pa.Table.from_batches(list(self.batches(schema)), schema=schema)
