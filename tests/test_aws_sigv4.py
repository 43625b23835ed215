"""The stdlib SigV4 client: signatures identical to botocore's and to AWS's published vector,
SQS's JSON protocol against moto over HTTP, and retries bounded to what is retryable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import errors
from payments.adapters.aws_sigv4 import AwsError, AwsJsonClient, Credentials, sign
from payments.adapters.queue import EventQueue, QueueUnavailable, SqsJsonClient, _region_of
from tools.local.sqs import LocalSqs, create_queues, start_sqs

AMZ_DATE = "20261201T120000Z"


def botocore_signature(
    url: str, headers: dict[str, str], body: bytes, creds: Credentials, service: str, region: str
) -> str:
    signed = {**headers, "X-Amz-Date": AMZ_DATE}
    if creds.session_token:
        signed["X-Amz-Security-Token"] = creds.session_token
    request = AWSRequest("POST", url, data=body, headers=signed)
    request.context["timestamp"] = AMZ_DATE
    auth = SigV4Auth(
        BotocoreCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        service,
        region,
    )
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


@pytest.mark.unit
def test_the_signature_is_aws_published_get_vanilla_vector() -> None:
    # Given AWS's SigV4 test suite case "get-vanilla"
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    # When it is signed
    headers = sign(
        "GET",
        "https://example.amazonaws.com/",
        {},
        b"",
        credentials=credentials,
        region="us-east-1",
        service="service",
        amz_date="20150830T123600Z",
    )

    # Then the Authorization header is the one AWS publishes
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


@pytest.mark.unit
@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    service_target=st.sampled_from(
        [
            ("sqs", "AmazonSQS.SendMessage", "1.0"),
            ("secretsmanager", "secretsmanager.GetSecretValue", "1.1"),
            ("ssm", "AmazonSSM.GetParameter", "1.1"),
        ]
    ),
    region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"]),
    token=st.one_of(st.none(), st.text("abcdefXYZ0123456789/+=", min_size=10, max_size=60)),
    host=st.sampled_from(["sqs.us-east-1.amazonaws.com", "127.0.0.1:4566", "localhost:9324"]),
)
def test_every_signature_matches_botocores_signer(
    body: bytes,
    service_target: tuple[str, str, str],
    region: str,
    token: str | None,
    host: str,
) -> None:
    # Given any JSON-protocol request, with or without a session token
    service, target, version = service_target
    creds = Credentials("AKIAEXAMPLE123", "secret/with+chars=", token)
    headers = {"Content-Type": f"application/x-amz-json-{version}", "X-Amz-Target": target}
    url = f"http://{host}/"

    # When both sign it at the same instant
    ours = sign(
        "POST",
        url,
        headers,
        body,
        credentials=creds,
        region=region,
        service=service,
        amz_date=AMZ_DATE,
    )

    # Then the signatures are the same
    assert ours["Authorization"].endswith(
        "Signature=" + botocore_signature(url, headers, body, creds, service, region)
    )
    assert ours.get("X-Amz-Security-Token") == token


@pytest.mark.unit
def test_credentials_come_from_the_lambda_environment_and_a_missing_one_is_named() -> None:
    creds = Credentials.from_environment(
        {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    )
    assert (creds.access_key_id, creds.secret_access_key, creds.session_token) == (
        "AKIA1",
        "s",
        "t",
    )
    shown = repr(Credentials("AKIA1", "very-secret", "token-value"))
    assert "very-secret" not in shown
    assert "token-value" not in shown

    with pytest.raises(errors.ConfigurationError, match="AWS_SECRET_ACCESS_KEY"):
        Credentials.from_environment({"AWS_ACCESS_KEY_ID": "AKIA1"})


@pytest.mark.unit
def test_region_and_endpoint_follow_the_lambda_and_boto3_variables() -> None:
    base = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    lambda_env = AwsJsonClient("sqs", "AmazonSQS", environ={**base, "AWS_REGION": "eu-west-1"})
    assert (lambda_env.region, lambda_env.endpoint) == (
        "eu-west-1",
        "https://sqs.eu-west-1.amazonaws.com",
    )
    local = AwsJsonClient(
        "sqs",
        "AmazonSQS",
        environ={**base, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://x:1/"},
    )
    assert local.endpoint == "http://x:1"
    specific = AwsJsonClient(
        "secretsmanager",
        "secretsmanager",
        environ={
            **base,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": "http://x:1",
            "AWS_ENDPOINT_URL_SECRETSMANAGER": "http://y:2",
        },
    )
    assert specific.endpoint == "http://y:2"
    with pytest.raises(errors.ConfigurationError, match="AWS_REGION"):
        AwsJsonClient("sqs", "AmazonSQS", environ=base)
    assert _region_of("https://sqs.ap-south-1.amazonaws.com/123/q") == "ap-south-1"
    assert _region_of("http://127.0.0.1:5000/000000000000/q") is None


@pytest.fixture(scope="module")
def moto() -> Iterator[LocalSqs]:
    with start_sqs() as local:
        yield local


@pytest.mark.integration
def test_send_message_over_the_json_protocol_reaches_moto_with_its_attributes(
    moto: LocalSqs,
) -> None:
    # Given a queue on moto's SQS, served over HTTP
    queue_url, _ = create_queues(moto.endpoint_url, "sigv4-json")
    queue = EventQueue(
        queue_url,
        SqsJsonClient(AwsJsonClient("sqs", "AmazonSQS", endpoint_url=moto.endpoint_url)),
    )

    # When two events are sent on the kept-alive connection
    ids = [
        queue.send_event(json.dumps({"n": n, "text": "é ✓"}), event_id=f"evt_{n}", event_type="t")
        for n in range(2)
    ]

    # Then both are on the queue, bodies and attributes intact
    messages = moto.client().receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert sorted(m["MessageId"] for m in messages) == sorted(ids)
    assert sorted(json.loads(m["Body"])["n"] for m in messages) == [0, 1]
    assert {m["MessageAttributes"]["stripe_event_id"]["StringValue"] for m in messages} == {
        "evt_0",
        "evt_1",
    }


@pytest.mark.integration
def test_a_missing_queue_is_refused_at_once_without_retrying(moto: LocalSqs) -> None:
    client = AwsJsonClient("sqs", "AmazonSQS", endpoint_url=moto.endpoint_url)
    queue_url, _ = create_queues(moto.endpoint_url, "sigv4-exists")

    with pytest.raises(QueueUnavailable) as raised:
        EventQueue(queue_url + "-gone", SqsJsonClient(client)).send_event(
            "{}", event_id="evt_x", event_type="t"
        )

    cause = raised.value.__cause__
    assert isinstance(cause, AwsError)
    assert (cause.status, cause.aws_code, cause.retryable) == (400, "QueueDoesNotExist", False)


class _Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers: list[tuple[int, dict[str, Any]]] = []
    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(dict(self.headers.items()))
        status, payload = type(self).answers.pop(0)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted() -> Iterator[type[_Scripted]]:
    handler = type("Handler", (_Scripted,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_throttling_and_5xx_are_retried_then_the_call_succeeds(
    scripted: type[_Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an endpoint that throttles, then fails, then answers
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-1")
    scripted.answers[:] = [
        (400, {"__type": "com.amazonaws.sqs#ThrottlingException", "message": "slow down"}),
        (500, {"__type": "InternalError"}),
        (200, {"Answer": 42}),
    ]
    client = AwsJsonClient("ssm", "AmazonSSM", json_version="1.1", endpoint_url=scripted.url)  # type: ignore[attr-defined]

    # When an operation is called
    answer = client.call("GetParameter", {"Name": "x"})

    # Then it took three signed attempts, each with the target and the session token
    assert answer == {"Answer": 42}
    assert len(scripted.seen) == 3
    assert {h["X-Amz-Target"] for h in scripted.seen} == {"AmazonSSM.GetParameter"}
    assert {h["X-Amz-Security-Token"] for h in scripted.seen} == {"session-token-1"}
    assert all(h["Content-Type"] == "application/x-amz-json-1.1" for h in scripted.seen)


@pytest.mark.integration
def test_retries_stop_after_three_attempts(scripted: type[_Scripted]) -> None:
    scripted.answers[:] = [(503, {"__type": "ServiceUnavailable"})] * 3
    client = AwsJsonClient("sqs", "AmazonSQS", endpoint_url=scripted.url)  # type: ignore[attr-defined]

    with pytest.raises(AwsError) as raised:
        client.call("SendMessage", {})

    assert raised.value.status == 503
    assert len(scripted.seen) == 3


@pytest.mark.integration
def test_an_answer_whose_digest_differs_from_the_body_sent_is_a_failed_write(
    scripted: type[_Scripted],
) -> None:
    scripted.answers[:] = [(200, {"MessageId": "m-1", "MD5OfMessageBody": "0" * 32})]
    client = SqsJsonClient(AwsJsonClient("sqs", "AmazonSQS", endpoint_url=scripted.url))  # type: ignore[attr-defined]

    with pytest.raises(QueueUnavailable):
        EventQueue("http://q/000/q", client).send_event("{}", event_id="evt_1", event_type="t")


@pytest.mark.integration
def test_an_unreachable_endpoint_is_an_aws_error_not_a_hang() -> None:
    client = AwsJsonClient(
        "sqs", "AmazonSQS", endpoint_url="http://127.0.0.1:9", connect_timeout=0.5, max_attempts=2
    )

    with pytest.raises(AwsError) as raised:
        client.call("SendMessage", {})

    assert raised.value.status is None
