"""A real single-node Kafka (KRaft) for dev and tests, and the client settings every profile uses.

No Docker here: the broker runs from Kafka's own jars, resolved once from Maven Central through
the Ivy jar pyspark ships and cached under `kafka.jars_cache`. `start` writes the broker and log
configuration into `kafka.data_dir`, formats the storage on first use, launches
`java kafka.Kafka` in its own session with a pid and a log file there, and waits until the
broker answers metadata requests. `stop` ends exactly that process (by its pid file).

Prod points `kafka.bootstrap_servers` at a managed cluster (MSK, Confluent) with TLS/SASL
settings taken from the environment; `client_config` and `spark_options` carry them to the
confluent-kafka clients and to Spark's Kafka source alike.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lake.settings import Settings, resolve_path

# Kafka's pom leaves these out of the runtime scope or publishes them as OSGi bundles, which a
# plain jar resolution skips; the broker needs them (logging and JSON of its config tools).
_BROKER_MODULES = (
    ("org.apache.kafka", "kafka_2.13", "{version}"),
    ("com.typesafe.scala-logging", "scala-logging_2.13", "3.9.6"),
    ("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.21.7"),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5"),
)
_COMPLETE = ".complete"  # written last: a half-fetched folder is fetched again


class KafkaError(RuntimeError):
    """The broker cannot be fetched, started or reached; the message says why and where to look."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    address: str
    data_dir: Path
    log: Path


def bootstrap_servers(settings: Settings) -> str:
    k = settings.kafka
    return k.bootstrap_servers or f"{k.host}:{k.port}"


def client_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka (librdkafka) settings: address and, in prod, TLS/SASL."""
    k = settings.kafka
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers(settings), "security.protocol": k.security_protocol}
    if k.sasl_mechanism:
        conf.update({"sasl.mechanism": k.sasl_mechanism, "sasl.username": k.sasl_username, "sasl.password": k.sasl_password})
    if k.ssl_ca_location:
        conf["ssl.ca.location"] = k.ssl_ca_location
    return conf


def spark_options(settings: Settings) -> dict[str, str]:
    """The same connection for Spark's Kafka source (`kafka.`-prefixed Java client settings)."""
    k = settings.kafka
    opts = {"kafka.bootstrap.servers": bootstrap_servers(settings), "kafka.security.protocol": k.security_protocol}
    if k.sasl_mechanism:
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule"
            if k.sasl_mechanism.upper().startswith("SCRAM")
            else "org.apache.kafka.common.security.plain.PlainLoginModule"
        )
        opts["kafka.sasl.mechanism"] = k.sasl_mechanism
        opts["kafka.sasl.jaas.config"] = f'{login} required username="{k.sasl_username}" password="{k.sasl_password}";'
    if k.ssl_ca_location:
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = k.ssl_ca_location
    return opts


def _java() -> str:
    from lake.spark import check_java

    check_java()  # fails with what to install
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java") or "java"


def jars_dir(settings: Settings) -> Path:
    return Path(resolve_path(settings.kafka.jars_cache)) / settings.kafka.version


def fetch_jars(settings: Settings) -> Path:
    """Kafka's broker jars, from Maven Central on first use (Ivy), then from the cache."""
    target = jars_dir(settings)
    if (target / _COMPLETE).is_file():
        return target
    import pyspark

    ivy_jars = sorted((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"))
    if not ivy_jars:
        raise KafkaError("pyspark's Ivy jar was not found: is pyspark installed in this environment?")
    target.mkdir(parents=True, exist_ok=True)
    deps = "\n".join(
        f'    <dependency org="{org}" name="{name}" rev="{rev.format(version=settings.kafka.version)}" '
        'conf="default->runtime(*),master(*)"/>'
        for org, name, rev in _BROKER_MODULES
    )
    ivy_xml = target / "ivy.xml"
    ivy_xml.write_text(
        '<ivy-module version="2.0">\n  <info organisation="lakehouse" module="kafka-broker"/>\n'
        f"  <dependencies>\n{deps}\n  </dependencies>\n</ivy-module>\n"
    )
    cmd = [
        _java(), "-cp", str(ivy_jars[0]), "org.apache.ivy.Main", "-ivy", str(ivy_xml),
        "-cache", resolve_path(settings.spark.jars_cache), "-m2compatible", "-types", "jar", "bundle",
        "-retrieve", str(target / "lib" / "[artifact]-[revision](-[classifier]).[ext]"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not list((target / "lib").glob("kafka_2.13-*.jar")):
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise KafkaError(
            f"fetching Kafka {settings.kafka.version} from Maven Central failed (is it reachable?):\n{tail}"
        )
    (target / _COMPLETE).write_text("ok\n")
    return target


def _data_dir(settings: Settings) -> Path:
    return Path(resolve_path(settings.kafka.data_dir))


def _pid_file(settings: Settings) -> Path:
    return _data_dir(settings) / "broker.pid"


def _log_file(settings: Settings) -> Path:
    return _data_dir(settings) / "broker.log"


def _server_properties(settings: Settings) -> str:
    k = settings.kafka
    logs = _data_dir(settings) / "logs"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{k.host}:{k.controller_port}",
            f"listeners=PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            f"advertised.listeners=PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={logs}",
            f"num.partitions={k.partitions}",
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            f"log.retention.hours={k.retention_hours}",
            "",
        ]
    )


_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def _read_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A pid file outliving a reboot can name an unrelated process: check it is our broker (the
    # command line reads empty while the java launcher re-executes itself: still ours).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return pid
    if state == "Z":  # exited, not reaped yet
        return None
    return pid if not cmdline or b"kafka.Kafka" in cmdline else None


def is_ready(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Does the cluster answer a metadata request with at least one broker?"""
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would log every refused connection while the broker starts.
    admin = AdminClient({**client_config(settings), "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except Exception:  # KafkaException on timeout/transport: not ready yet
        return False


def status(settings: Settings) -> BrokerStatus:
    pid = _read_pid(settings)
    ready = pid is not None and is_ready(settings)
    return BrokerStatus(pid is not None, ready, pid, bootstrap_servers(settings), _data_dir(settings), _log_file(settings))


def _log_tail(settings: Settings, lines: int = 20) -> str:
    try:
        return "\n".join(_log_file(settings).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(settings: Settings, timeout_s: float | None = None) -> BrokerStatus:
    """Start the local broker (a no-op when it already runs) and wait until it answers."""
    current = status(settings)
    if current.running:
        return current if current.ready else wait_ready(settings, timeout_s)
    lib = fetch_jars(settings) / "lib"
    java = _java()
    data = _data_dir(settings)
    data.mkdir(parents=True, exist_ok=True)
    props, log4j = data / "server.properties", data / "log4j2.properties"
    props.write_text(_server_properties(settings))
    log4j.write_text(_LOG4J)
    classpath = f"{lib}/*"
    if not (data / "logs" / "meta.properties").is_file():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}", "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id}", "-c", str(props)],  # "=": an id may start with "-"
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise KafkaError(f"formatting the broker storage in {data / 'logs'} failed:\n{fmt.stdout}{fmt.stderr}")
    k = settings.kafka
    with _log_file(settings).open("ab") as log:
        proc = subprocess.Popen(
            [java, f"-Xmx{k.heap}", f"-Xms{k.heap}", "-XX:+UseG1GC", "-cp", classpath,
             f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={data}", "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    _pid_file(settings).write_text(f"{proc.pid}\n")
    return wait_ready(settings, timeout_s)


def wait_ready(settings: Settings, timeout_s: float | None = None) -> BrokerStatus:
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else settings.kafka.start_timeout_s)
    while time.monotonic() < deadline:
        if _read_pid(settings) is None:
            raise KafkaError(f"the broker exited while starting; {_log_file(settings)} ends with:\n{_log_tail(settings)}")
        if is_ready(settings):
            return status(settings)
        time.sleep(0.5)
    raise KafkaError(
        f"the broker did not answer on {bootstrap_servers(settings)} within the timeout; "
        f"{_log_file(settings)} ends with:\n{_log_tail(settings)}"
    )


def stop(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Stop the broker this data dir's pid file names (SIGTERM, then SIGKILL); False if none ran."""
    pid = _read_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _pid_file(settings).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ensure_topic(settings: Settings, topic: str, partitions: int | None = None) -> None:
    """Create `topic` when missing (the replication factor of a one-node cluster in dev: 1)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**client_config(settings), "log_level": 0})
    if topic in admin.list_topics(timeout=10).topics:
        return
    parts = partitions or settings.kafka.partitions
    futures = admin.create_topics([NewTopic(topic, num_partitions=parts, replication_factor=settings.kafka.replication_factor)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise KafkaError(f"creating topic {topic!r} on {bootstrap_servers(settings)} failed: {exc}") from exc
