"""Appends to BigQuery COMMITTED write streams at explicit offsets (Storage Write API).

A COMMITTED stream makes each append visible at once and numbers the rows it
holds. An append names the offset it expects to start at: the service accepts
it only if that is the stream's end, answers ALREADY_EXISTS if rows are already
there (an earlier append at that offset landed) and OUT_OF_RANGE if it lies
beyond the end. Resending the same rows at the same offset therefore never
writes them twice: that is the Write API's exactly-once mechanism. This module
turns the service's answers into an `AppendOutcome`; what to do with each is the
shipper's business (`serving.prediction_logger`).

One AppendRows call per batch: the call carries the writer schema and one
request, so a broken connection costs only that batch's answer, never a
stream state the next call would have to rebuild.
"""

from __future__ import annotations

import enum
import queue
import threading
from typing import Any, Sequence

import grpc
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2

from bandit_core.bigquery.clients import BigQueryEndpoints

# The shipper paces its retries itself; left to its defaults, a channel that failed
# through an outage waits up to two minutes before it even tries to reconnect.
_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# A proxy taken from the environment must never sit between us and the local emulator.
_DIRECT_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
# How long past its deadline a call may take to report that it ended.
_GRACE_S = 1.0
_LANDED = {grpc.StatusCode.ALREADY_EXISTS}
# The stream is gone, sealed or behind the offsets this process assigned.
_STREAM_LOST = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class AppendOutcome(enum.Enum):
    """What became of one append.

    APPENDED: the rows are in the table now, once. ALREADY_PRESENT: an earlier
    append at this offset landed them. STREAM_LOST: the stream is gone, sealed or
    behind, so whether an earlier send of the rows landed is unknown.
    """

    APPENDED = "appended"
    ALREADY_PRESENT = "already_present"
    STREAM_LOST = "stream_lost"


class AppendFailed(RuntimeError):
    """BigQuery answered the append with an error other than the offset checks' answers.

    The rows did not land; the same rows at the same offset may be sent again.
    """


class CommittedStreamWriter:
    """Creates COMMITTED write streams and appends serialized proto rows at given offsets."""

    def __init__(self, endpoints: BigQueryEndpoints, timeout_s: float) -> None:
        """Real BigQuery when `endpoints.grpc_endpoint` is None, else the emulator's plain gRPC."""
        self._endpoints = endpoints
        self._timeout_s = timeout_s
        self._client = _client(endpoints)

    def create_stream(self, table_id: str) -> str:
        """A new COMMITTED stream on `table_id` ("project.dataset.table"); returns its name."""
        project, dataset, table = table_id.rsplit(".", 2)
        stream = self._client.create_write_stream(
            parent=f"projects/{project}/datasets/{dataset}/tables/{table}",
            write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
            retry=None,
            timeout=self._timeout_s,
        )
        return stream.name

    def append(
        self,
        stream_name: str,
        offset: int,
        descriptor: descriptor_pb2.DescriptorProto,
        rows: Sequence[bytes],
    ) -> AppendOutcome:
        """Appends `rows` (messages of `descriptor`, a DescriptorProto) at `offset`.

        Raises AppendFailed if BigQuery answered with another error, and
        ConnectionError or TimeoutError if the call failed on the way (then the rows
        may have landed: send the same rows at the same offset again to find out).
        The raw gRPC call, not the client's wrapper, and its answer awaited in a
        thread of its own, so a call that never ends cannot stop the shipper.
        """
        request = types.AppendRowsRequest(
            write_stream=stream_name,
            offset=offset,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=descriptor),
                rows=types.ProtoRows(serialized_rows=list(rows)),
            ),
        )
        call = self._client.transport.append_rows(
            iter([request]),
            timeout=self._timeout_s,
            metadata=(("x-goog-request-params", f"write_stream={stream_name}"),),
        )
        answers: queue.Queue = queue.Queue(maxsize=1)
        threading.Thread(target=_first_answer, args=(call, answers), daemon=True).start()
        try:
            response, error = answers.get(timeout=self._timeout_s + _GRACE_S)
        except queue.Empty:
            # Seen with grpcio 1.66 when the emulator restarted under a call: neither the
            # deadline nor cancel() ends it. The waiting thread is left behind, and the
            # next call gets a new channel.
            self._client = _client(self._endpoints)
            raise TimeoutError(
                f"AppendRows on {stream_name} had no answer in {self._timeout_s} s"
            ) from None
        finally:
            call.cancel()
        if error is not None:
            code = error.code()
            if code in _LANDED:
                return AppendOutcome.ALREADY_PRESENT
            if code in _STREAM_LOST:
                return AppendOutcome.STREAM_LOST
            raise ConnectionError(f"AppendRows on {stream_name} failed: {code.name}")
        if response is None:
            raise ConnectionError(f"AppendRows on {stream_name} ended without an answer")
        return _outcome(stream_name, offset, response)


def _first_answer(call: Any, answers: queue.Queue) -> None:
    try:
        answers.put((next(call, None), None))
    except grpc.RpcError as error:
        answers.put((None, error))


def _client(endpoints: BigQueryEndpoints) -> BigQueryWriteClient:
    """Real BigQuery when `endpoints.grpc_endpoint` is None, else the emulator's plain gRPC."""
    if endpoints.grpc_endpoint is None:
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=_google_channel))
    channel = grpc.insecure_channel(
        endpoints.grpc_endpoint, options=_DIRECT_CHANNEL_OPTIONS + _RECONNECT_OPTIONS
    )
    return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))


def _google_channel(*args: Any, options: list, **kwargs: Any) -> grpc.Channel:
    """Real BigQuery's channel as the client would make it, reconnecting promptly."""
    return BigQueryWriteGrpcTransport.create_channel(
        *args, options=options + _RECONNECT_OPTIONS, **kwargs
    )


def _outcome(stream_name: str, offset: int, response: types.AppendRowsResponse) -> AppendOutcome:
    code = _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN)
    if code is grpc.StatusCode.OK:
        if response.row_errors:
            raise AppendFailed(f"BigQuery refused rows at {offset}: {response.row_errors[0]}")
        return AppendOutcome.APPENDED
    if code in _LANDED:
        return AppendOutcome.ALREADY_PRESENT
    if code in _STREAM_LOST:
        return AppendOutcome.STREAM_LOST
    raise AppendFailed(
        f"BigQuery refused the append at {offset} on {stream_name}: "
        f"{code.name}: {response.error.message}"
    )
