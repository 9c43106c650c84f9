"""The configuration as typed structs: one struct per TOML table, variants tagged by `type`.

Paths in the config (video files, outputs) are relative to the working directory.
"""

from __future__ import annotations

import ipaddress
import string
from typing import Annotated, Literal, Union, get_args
from urllib.parse import urlsplit

import msgspec

from ..redact import redact_url

Positive = Annotated[int, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# Every source id, written or generated: safe in a URL path, a header, a log line and a file name.
ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
Identifier = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
QueuePolicy = Literal["block", "latest"]
# What a sink takes: each frame's result, the events stages raise, or both.
Kinds = Annotated[list[Literal["frames", "events"]], msgspec.Meta(min_length=1)]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Every table rejects keys it does not know."""


class ModelConfig(Base, kw_only=True):
    """`[model]`: which model runs, where, and how its raw output is filtered."""

    id: NonEmpty = "centerface"
    architecture: str | None = None
    backend: Literal["onnxruntime", "torch", "tensorrt"] | None = None
    device: Annotated[str, msgspec.Meta(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"
    # One quantization, or those allowed (`["fp32", "int8"]`: int8 on CPU when the model has it).
    quantization: (
        Literal["fp32", "fp16", "int8"]
        | Annotated[list[Literal["fp32", "fp16", "int8"]], msgspec.Meta(min_length=1)]
        | None
    ) = None
    onnx_execution_providers: list[str] | None = None
    disabled_backends: list[Literal["onnxruntime", "torch", "tensorrt"]] = []
    allow_untrusted_packages: bool = False
    cache_dir: str | None = None
    offline: bool = False
    registry_url: str | None = None
    registry_token: str | None = None
    dependency_models_params: dict[str, dict[str, object]] = {}
    confidence: Fraction | None = None
    iou: Fraction | None = None
    input_size: tuple[Positive, Positive] | None = None
    fit_to_frames: bool | None = None
    workers: Positive | None = None
    threads: Positive = 1


class BatchingConfig(Base, kw_only=True):
    """`[batching]`: a batch leaves when it is full or its first frame has waited `max_wait_ms`."""

    max_batch_size: Positive = 4
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 10.0


class SourceConfigBase(Base, tag_field="type", kw_only=True):
    id: Identifier | None = None  # 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit
    # Frames waiting for the model, and what happens when they are full (sources/queue.py): live
    # sources keep two, the oldest dropped (`latest`, they never fall behind; the older one is taken
    # only while it can make the budget, else the newest); files override it.
    queue_size: Positive = 2
    policy: QueuePolicy = "latest"
    max_frames: Positive | None = None
    max_fps: Annotated[float, msgspec.Meta(gt=0)] | None = None
    staleness_ms: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Under `latest`: the capture -> result time each frame should keep within; batches are sized to
    # it from what the model is seen to cost, and frames too late for it are skipped for fresher ones.
    # "auto": 1.5 x a batch of one's cost (its own, and half of one for a worker), at least 50 ms
    # (docs/batching.md). A camera (RTSP, webcam) whose decoding runs behind its stream by half the
    # budget, at least 0.5 s (0.5 s under "auto"), reads on to its next keyframe (sources/catch_up.py).
    # `block` queues batch for throughput ([batching]).
    latency_budget_ms: Annotated[float, msgspec.Meta(gt=0)] | Literal["auto"] = "auto"
    # CPU decode threads. "auto": one under `latest` (a camera comes at its own rate, which one core
    # decodes 1080p several times over; frame threads took ~12% more CPU a frame decoding a 1080p
    # file, within the noise on paced cameras, and each holds back a frame),
    # FFmpeg's own (one per core) under `block`, where a file decodes as fast as the model takes it.
    decode_threads: Positive | Literal["auto"] = "auto"
    # Hardware decoding through FFmpeg (e.g. "cuda" for NVDEC); where the build or the machine
    # cannot, the source logs it once and decodes on the CPU.
    hwaccel: Literal["cuda", "vaapi", "qsv", "videotoolbox", "d3d11va", "vulkan", "drm"] | None = None
    # The GPU that decodes with `hwaccel` ("cuda": its index, as in the model's "cuda:N"); None: the default one.
    hwaccel_device: Annotated[int, msgspec.Meta(ge=0)] | None = None


class FileSourceConfig(SourceConfigBase, tag="file", kw_only=True):
    """A video file, read as fast as the pipeline takes it or paced to real time.

    A file that ends with decode errors, or with fewer frames than its container declares (cut
    short), is reported as damaged and makes the run fail (`streamer run` exits 1), unless
    `tolerate_damage` is true: then it is still reported, and the run succeeds.
    """

    path: NonEmpty
    queue_size: Positive = 8  # a few frames ahead keep the model busy
    policy: QueuePolicy = "block"  # lose nothing: the file waits for the model
    realtime: bool = False
    loop: bool = False
    tolerate_damage: bool = False


class LavfiSourceConfig(SourceConfigBase, tag="lavfi", kw_only=True):
    """An FFmpeg lavfi test pattern such as `testsrc2=size=1280x720:rate=30`, a stand-in camera."""

    graph: NonEmpty
    realtime: bool = True


class LiveSourceConfigBase(SourceConfigBase, kw_only=True):
    """Network streams and cameras: timeouts, and reconnects with exponential backoff and jitter."""

    open_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    backoff_initial_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 0
    options: dict[str, str] = {}


class RtspSourceConfig(LiveSourceConfigBase, tag="rtsp", kw_only=True):
    """An RTSP camera: `rtsp://user:pass@host:554/path`; credentials are masked everywhere."""

    url: Annotated[str, msgspec.Meta(pattern=r"^rtsps?://")]
    transport: Literal["tcp", "udp"] = "tcp"


class HlsSourceConfig(LiveSourceConfigBase, tag="hls", kw_only=True):
    """An HTTP stream FFmpeg can read: HLS playlists (`.m3u8`) and the like."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]


class WebcamSourceConfig(LiveSourceConfigBase, tag="webcam", kw_only=True):
    """A V4L2 camera such as `/dev/video0` (needs a PyAV build with v4l2 input)."""

    device: NonEmpty
    video_size: str | None = None  # e.g. "1280x720"
    framerate: str | None = None  # e.g. "30"
    input_format: str | None = None  # e.g. "mjpeg"


SourceConfig = Union[FileSourceConfig, LavfiSourceConfig, RtspSourceConfig, HlsSourceConfig, WebcamSourceConfig]


class FilterStageConfig(Base, tag_field="type", tag="filter", kw_only=True):
    """Keep detections at or above `min_confidence` whose class is in `classes` (all when absent)."""

    min_confidence: Fraction = 0.0
    classes: list[str] | None = None


class CustomStageConfig(Base, tag_field="type", tag="custom", kw_only=True):
    """A user function `module:function` taking a Result and returning a Result (or None to drop)."""

    function: NonEmpty
    options: dict[str, object] = {}


class ModelStageConfig(Base, tag_field="type", tag="model", kw_only=True):
    """Run a second model (`model`) or a named pipeline (`pipeline`) on every frame.

    Its detections go to the result's `key` field (JSONL writes them beside the main ones).
    """

    model: str | None = None
    pipeline: str | None = None
    key: NonEmpty = "stage"
    device: Annotated[str, msgspec.Meta(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"
    threads: Positive = 1

    def __post_init__(self) -> None:
        if (self.model is None) == (self.pipeline is None):
            raise ValueError("set exactly one of `model` and `pipeline`")


class TrackStageConfig(Base, tag_field="type", tag="track", kw_only=True):
    """Follow objects across frames (ByteTrack, per source; docs/tracking.md): every detection gets a `tracker_id`.

    Detections the tracker does not (yet) follow are dropped. Ids are unique across sources and
    start afresh when a source reconnects or changes resolution.

    With `appearance_model` (an embedding model, such as "mobilenetv2-reid") tracks are matched by
    appearance as well as motion, as DeepSORT and BoT-SORT do: each track keeps a gallery of its
    crops' embeddings, and a track motion alone would start afresh (the object was hidden for
    longer than `lost_frames`, or came back far from where it was lost) takes the id of a track lost
    within `gallery_frames` whose gallery it matches with cosine similarity >= `appearance_threshold`.
    """

    activation_threshold: Fraction = 0.25  # confidence a detection needs to start a track
    lost_frames: Positive = 30  # frames a lost track is kept for before its id is retired
    match_threshold: Fraction = 0.8
    min_frames: Positive = 1  # frames a track must be seen on before it gets an id
    appearance_model: NonEmpty | None = None
    appearance_threshold: Fraction = 0.8
    gallery_frames: Positive = 300  # frames a lost track's appearance is remembered for
    device: Annotated[str, msgspec.Meta(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"  # the appearance model's
    threads: Positive = 1


Anchor = Literal[
    "center", "center_left", "center_right", "top_center", "top_left", "top_right",
    "bottom_left", "bottom_center", "bottom_right", "center_of_mass",
]  # fmt: skip
Point = tuple[float, float]


class ZoneConfig(Base, kw_only=True):
    """A polygon: a tracked object's `anchor` point inside it is in the zone."""

    name: NonEmpty
    polygon: Annotated[list[Point], msgspec.Meta(min_length=3)]
    classes: list[str] | None = None
    anchor: Anchor = "bottom_center"


class LineConfig(Base, kw_only=True):
    """A line from `start` to `end`; a track crosses it when all of `anchors` changed sides."""

    name: NonEmpty
    start: Point
    end: Point
    classes: list[str] | None = None
    anchors: list[Anchor] = msgspec.field(default_factory=lambda: ["top_left", "top_right", "bottom_left", "bottom_right"])
    min_crossing_frames: Positive = 1  # frames a track must stay on the new side to count


class ZonesStageConfig(Base, tag_field="type", tag="zones", kw_only=True):
    """Zone enter/leave and line-cross events, plus counts per zone and class (needs a `track` stage first).

    Coordinates are source pixels, or fractions of the frame with `relative = true`. `sources`
    limits the geometry to those cameras (all when absent). A track inside a zone that is not seen
    for `forget_after_frames` frames leaves it.
    """

    zones: list[ZoneConfig] = []
    lines: list[LineConfig] = []
    sources: list[str] | None = None
    relative: bool = False
    forget_after_frames: Positive = 30

    def __post_init__(self) -> None:
        if not self.zones and not self.lines:
            raise ValueError("give at least one of `zones` and `lines`")
        names = [shape.name for shape in [*self.zones, *self.lines]]
        if len(set(names)) != len(names):
            raise ValueError(f"zone and line names must be unique, got {names}")
        if self.relative:
            points = [point for zone in self.zones for point in zone.polygon]
            points += [point for line in self.lines for point in (line.start, line.end)]
            outside = [point for point in points if not all(0.0 <= value <= 1.0 for value in point)]
            if outside:
                raise ValueError(f"with `relative = true` coordinates are fractions of the frame (0 to 1), got {outside[0]}")


class PresenceStageConfig(Base, tag_field="type", tag="presence", kw_only=True):
    """`class_appeared` / `class_disappeared` events per source, debounced by consecutive frames."""

    classes: list[str] | None = None
    min_confidence: Fraction = 0.0
    appear_frames: Positive = 3
    disappear_frames: Positive = 15


class AnonymizeStageConfig(Base, tag_field="type", tag="anonymize", kw_only=True):
    """Blur or pixelate faces (or other boxes) in the frame itself, so video and snapshot sinks never see them.

    Boxes come from `model` (the default face detector), or from the main model's detections when
    `model` is the main model or empty; `classes` then picks which. `strength` is the blur kernel or
    pixel size as a fraction of the box's longer side; `padding` grows each box by that fraction.
    """

    method: Literal["blur", "pixelate"] = "blur"
    model: str | None = "centerface"
    classes: list[str] | None = None
    min_confidence: Fraction = 0.3
    padding: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.15
    strength: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.35
    device: Annotated[str, msgspec.Meta(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"
    threads: Positive = 1


class ClassifyStageConfig(Base, tag_field="type", tag="classify", kw_only=True):
    """Classify each detection's crop with `model` (a classifier such as "ppocr-text-direction").

    The boxes stay the detector's; each gets the classifier's scores in `class_scores` (N, C) and
    its top class in `data["crop_class"]` (the class name), `data["crop_class_id"]` and
    `data["crop_score"]`. Only boxes of `classes` (all when absent) at or above `min_confidence`
    and at least `min_size` pixels on each side are classified; the others get class "" and id -1.
    `padding` grows each crop by that fraction of its box's size before classifying.
    """

    model: NonEmpty
    classes: list[str] | None = None
    min_confidence: Fraction = 0.0
    min_size: Positive = 8
    padding: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    device: Annotated[str, msgspec.Meta(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"
    threads: Positive = 1


StageConfig = Union[FilterStageConfig, CustomStageConfig, ModelStageConfig, TrackStageConfig, ZonesStageConfig, PresenceStageConfig, AnonymizeStageConfig, ClassifyStageConfig]


class SinkConfigBase(Base, tag_field="type", kw_only=True):
    """What every `[[sinks]]` table has; a sink of your own (a `streamer.sinks.Sink`) is built from one."""

    sources: list[str] | None = None
    queue_size: Positive = 64
    overflow: Literal["block", "drop_oldest"] = "block"  # when the sink's queue is full


class JsonlSinkConfig(SinkConfigBase, tag="jsonl", kw_only=True):
    """One JSON line per frame, optionally rotated by size or age (rotated files are kept up to `keep`).

    Lines follow the versioned results schema of docs/results.md (`"schema"` on every line)."""

    path: NonEmpty
    rotate_bytes: Positive | None = None
    rotate_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    keep: Positive | None = None
    kinds: Kinds = msgspec.field(default_factory=lambda: ["frames"])
    embeddings: bool = False  # write each box's embedding (D floats a box: big) in the results schema

    def __post_init__(self) -> None:
        if self.keep is not None and self.rotate_bytes is None and self.rotate_seconds is None:
            raise ValueError("`keep` needs `rotate_bytes` or `rotate_seconds`")


class VideoSinkConfig(SinkConfigBase, tag="video", kw_only=True):
    """An MP4 of one source, annotated (boxes, labels, track ids, zones) unless `annotate = false`."""

    path: NonEmpty
    codec: NonEmpty = "libx264"
    crf: Annotated[int, msgspec.Meta(ge=0, le=51)] = 23
    fps: Annotated[float, msgspec.Meta(gt=0)] | None = None
    annotate: bool = True


class SnapshotSinkConfig(SinkConfigBase, tag="snapshot", kw_only=True):
    """A JPEG in `folder/<source>/` whenever a detection of `classes` (any, when absent) is confident enough."""

    folder: NonEmpty
    classes: list[str] | None = None
    min_confidence: Fraction = 0.5
    min_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    annotate: bool = True
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 90


class WebhookSinkConfig(SinkConfigBase, tag="webhook", kw_only=True):
    """POST results as JSON; while the endpoint is down they wait in a durable on-disk spool."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    batch_size: Positive = 1
    batch_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    backoff_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    secret_env: str | None = None  # HMAC-SHA256 key, read from this environment variable
    headers: dict[str, str] = {}
    header_env: dict[str, str] = {}  # header name -> environment variable holding its value
    spool_dir: str | None = None
    spool_max_bytes: Positive = 64 << 20
    spool_takeover: bool = False  # take the spool from a live holder (a cut-off worker) and fence it off
    dead_letter_path: str | None = None
    drain_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    kinds: Kinds = msgspec.field(default_factory=lambda: ["frames"])

    def __post_init__(self) -> None:
        if not urlsplit(self.url).hostname:
            raise ValueError(f"the URL must be http(s)://host/..., got {redact_url(self.url)!r}")


class MqttSinkConfig(SinkConfigBase, tag="mqtt", kw_only=True):
    """Publish each result to an MQTT broker (QoS 0/1/2); results wait in a bounded buffer while it is down."""

    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1883
    topic: NonEmpty = "streamer/{source}/detections"
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = None  # the password itself never goes in a config file
    tls: bool = False
    status_topic: str | None = "streamer/status"
    keepalive_s: Positive = 30
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # for the broker's CONNACK
    backoff_initial_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    max_in_flight: Positive = 1000
    drain_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # Unacknowledged QoS 1/2 results also kept on disk here, replayed by whoever opens it next.
    spool_dir: str | None = None
    spool_max_bytes: Positive = 64 << 20
    spool_takeover: bool = False  # take the spool from a live holder (a cut-off worker) and fence it off
    kinds: Kinds = msgspec.field(default_factory=lambda: ["frames"])

    def __post_init__(self) -> None:
        if self.spool_dir is not None and self.qos == 0:
            raise ValueError("spool_dir keeps results until the broker acknowledges them: set qos to 1 or 2")
        check_topic(self.topic, MQTT_TOPIC_FIELDS)
        if self.status_topic is not None:
            check_topic(self.status_topic, ())


MQTT_TOPIC_FIELDS = ("source", "model", "kind")  # the {placeholders} an MQTT topic template may use


def check_topic(template: str, fields: tuple[str, ...]) -> None:
    """ValueError unless `template` is a publishable MQTT topic using only `fields` as {placeholders}."""
    allowed = ", ".join(f"{{{name}}}" for name in fields) or "no placeholders"
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"mqtt topic {template!r}: {exc}") from exc
    if not template:
        raise ValueError("mqtt topic: empty")
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise ValueError(f"mqtt topic {template!r}: unknown placeholder {{{unknown[0]}}}; use {allowed}")
    if {"+", "#"} & set(template):
        raise ValueError(f"mqtt topic {template!r}: wildcards (+ or #) are for subscribers only")


class CallbackSinkConfig(SinkConfigBase, tag="callback", kw_only=True):
    """A user function `module:function` called with each Result (sync or async)."""

    function: NonEmpty
    kinds: Kinds = msgspec.field(default_factory=lambda: ["frames"])


SinkConfig = Union[JsonlSinkConfig, VideoSinkConfig, SnapshotSinkConfig, WebhookSinkConfig, MqttSinkConfig, CallbackSinkConfig]


# The lavfi generators a source added through the admin API may be (each only with the options
# streamer/service/source_policy.py lists for it: none reads or writes a file).
LavfiGenerator = Literal[
    "testsrc", "testsrc2", "smptebars", "smptehdbars", "pal75bars", "pal100bars", "rgbtestsrc", "yuvtestsrc",
    "color", "allrgb", "allyuv", "haldclutsrc", "colorspectrum", "colorchart", "mandelbrot", "life",
    "cellauto", "gradients", "sierpinski",
]  # fmt: skip
# FFmpeg options an API-added live source may set: timing, buffering and reconnects, nothing that
# names a file, a protocol, a proxy, a listening socket or a header.
API_FFMPEG_OPTIONS = (
    "rtsp_transport", "analyzeduration", "probesize", "fflags", "max_delay", "reorder_queue_size",
    "buffer_size", "timeout", "rw_timeout", "stimeout", "allowed_media_types", "live_start_index",
    "max_reload", "m3u8_hold_counters", "seg_max_retry", "http_persistent", "http_multiple",
    "reconnect", "reconnect_streamed", "reconnect_on_network_error", "reconnect_delay_max",
)  # fmt: skip
# Never settable through the API, whatever `ffmpeg_options` says: they decide what FFmpeg may open.
PROTOCOL_OPTIONS = frozenset({"protocol_whitelist", "protocol_blacklist"})


class ApiSourcesConfig(Base, kw_only=True):
    """`[server.api_sources]`: what a source added through `POST /sources` may read (403 otherwise).

    The config file is trusted and never checked against it. `file_roots`: folders (relative to
    the working directory) whose files, after symlinks and `..` are resolved, the API may open;
    none by default, so the API adds no file source. `lavfi_filters`: the generators a lavfi graph
    may be (one filter, `key=value` options only). `ffmpeg_options`: the keys a live source's
    `options` may set. `webcams`: whether the API may open `/dev/videoN` devices.
    """

    file_roots: list[NonEmpty] = []
    lavfi_filters: list[LavfiGenerator] = msgspec.field(default_factory=lambda: list(get_args(LavfiGenerator)))
    ffmpeg_options: list[NonEmpty] = msgspec.field(default_factory=lambda: list(API_FFMPEG_OPTIONS))
    webcams: bool = False

    def __post_init__(self) -> None:
        protocol = sorted(PROTOCOL_OPTIONS.intersection(self.ffmpeg_options))
        if protocol:
            raise ValueError(f"`ffmpeg_options` may not list {protocol}: streamer sets which protocols FFmpeg may open")


class ServerConfig(Base, kw_only=True):
    """`[server]`: one HTTP server for /metrics (Prometheus), /healthz, /readyz, /status and the admin API.

    It listens on loopback unless `host` says otherwise, and only with `token_env` when it does.
    With `token_env`, every route but the health checks needs `Authorization: Bearer <the
    variable's value>`. It answers only requests whose Host header is the bound address, localhost
    or a name in `allowed_hosts` (a DNS-rebinding page's Host is its own name).
    """

    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464  # 0: any free port
    token_env: str | None = None
    allowed_hosts: list[NonEmpty] = []  # more names the server answers to (Host header), e.g. behind a proxy
    api_sources: ApiSourcesConfig = msgspec.field(default_factory=ApiSourcesConfig)

    def __post_init__(self) -> None:
        if self.token_env is None and not is_loopback(self.host):
            raise ValueError(
                f"host = {self.host!r} lets other machines in, so it needs a token: set `token_env` to the name of"
                " an environment variable that holds one (e.g. token_env = \"STREAMER_ADMIN_TOKEN\"), or listen"
                " on 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RunConfig(Base, kw_only=True):
    """`[run]`: how a `streamer run` ends and resumes.

    SIGTERM/SIGINT stop reading and give the sinks `drain_timeout_s` to take what was read.
    With `checkpoint`, file sources record the last frame every sink has written (every
    `checkpoint_interval_s`), and a restarted run goes on after it.
    """

    drain_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    checkpoint: str | None = None
    checkpoint_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class ClusterConfig(Base, kw_only=True):
    """`[cluster]`: `streamer cluster run` spreads the sources over Ray actors (docs/cluster.md).

    `address`: "local" starts a private Ray on loopback for this run; anything else is an existing
    cluster's address ("auto", "ray://host:10001", "host:6379"). Each of `workers` actors reserves
    `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (a fraction lets workers share one) and runs
    at most `max_sources_per_worker` sources. `state_dir` holds spools, result files and
    checkpoints, one folder per worker slot: on a real cluster it must be storage every node sees.
    The coordinator pings each worker every `ping_interval_s`; one that has not answered for
    `hang_timeout_s` is taken for hung (its sources move), and a worker that has heard no ping for
    that long stops its sources itself. `object_store_mb` caps a local Ray's object store (frames
    never go through it: only small control messages do).
    """

    address: NonEmpty = "local"
    workers: Positive = 2
    cpus_per_worker: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    gpus_per_worker: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_sources_per_worker: Positive = 8
    state_dir: NonEmpty = "streamer-state"
    ping_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    hang_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    object_store_mb: Annotated[int, msgspec.Meta(ge=75)] = 96

    def __post_init__(self) -> None:
        if self.hang_timeout_s <= self.ping_interval_s:
            raise ValueError(f"`hang_timeout_s` ({self.hang_timeout_s}) must be longer than `ping_interval_s` ({self.ping_interval_s})")


class Config(Base, kw_only=True):
    """The whole file."""

    sources: Annotated[list[SourceConfig], msgspec.Meta(min_length=1)]
    model: ModelConfig = msgspec.field(default_factory=ModelConfig)
    batching: BatchingConfig = msgspec.field(default_factory=BatchingConfig)
    stages: list[StageConfig] = []
    sinks: list[SinkConfig] = []
    server: ServerConfig | None = None
    run: RunConfig = msgspec.field(default_factory=RunConfig)
    cluster: ClusterConfig | None = None  # read by `streamer cluster run` only
