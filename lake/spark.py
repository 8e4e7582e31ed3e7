"""The Spark + Delta session: built here and nowhere else.

The Delta jars come from Maven Central through Spark's Ivy resolver on first use and are
cached under `spark.jars_cache`. The catalog is per process (in-memory): every declared table
that exists in the lake is registered from its Delta location when the session starts, so any
number of processes (a pipeline writing, an analyst querying, the Thrift server) share the lake
without a single-JVM Derby metastore locking the others out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from lake.settings import REPO_ROOT, Settings, get_settings, join, resolve_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LAYERS = ("bronze", "silver", "gold", "quarantine")
log = logging.getLogger(__name__)
LOG4J_CONFIG = REPO_ROOT / "config" / "log4j2.properties"

# Spark ships these; the copies Delta's kernel modules pull in transitively would shadow them.
_PROVIDED_BY_SPARK = [
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.datatype:jackson-datatype-jdk8",
    "com.github.luben:zstd-jni",
    "org.xerial.snappy:snappy-java",
    "commons-logging:commons-logging",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "io.airlift:aircompressor",
    "com.google.code.findbugs:jsr305",
]


class SparkSetupError(RuntimeError):
    """Spark cannot start here; the message says what is missing and how to get it."""


def check_java() -> str:
    """Return the Java version line, or fail with what to install."""
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else None
    exe = str(java) if java and java.exists() else shutil.which("java")
    if not exe:
        raise SparkSetupError(
            "Java 17+ is required by Spark and was not found (no JAVA_HOME, no `java` on PATH). "
            "Install it with `apt-get install -y openjdk-17-jre-headless` (make demo/test does this)."
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else exe


def _manifest(settings: Settings) -> Path:
    """Where the jar list resolved for the configured packages is remembered."""
    packages = ",".join([settings.spark.delta_package, *settings.spark.extra_packages])
    digest = hashlib.sha256(packages.encode()).hexdigest()[:12]
    return Path(resolve_path(settings.spark.jars_cache)) / f"resolved-{digest}.txt"


def _jars_conf(settings: Settings) -> dict[str, str]:
    """Resolve the packages through Ivy (Maven Central) once; later starts use the cached jars.

    Skipping Ivy on later starts saves a resolution round trip and works offline.
    """
    manifest = _manifest(settings)
    if manifest.is_file():
        jars = manifest.read_text().split()
        if jars and all(Path(j).is_file() for j in jars):
            return {"spark.jars": ",".join(jars)}
    s = settings.spark
    return {
        "spark.jars.packages": ",".join([s.delta_package, *s.extra_packages]),
        "spark.jars.excludes": ",".join(_PROVIDED_BY_SPARK),
        "spark.jars.ivy": resolve_path(s.jars_cache),
    }


def _remember_jars(spark: SparkSession, settings: Settings) -> None:
    manifest = _manifest(settings)
    if manifest.is_file():
        return
    jars = [j.removeprefix("file://").removeprefix("file:") for j in (spark.conf.get("spark.jars", "") or "").split(",") if j]
    if jars and all(Path(j).is_file() for j in jars):
        manifest.write_text("\n".join(jars) + "\n")


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting the platform relies on, in one place (also used by spark-submit)."""
    s = settings.spark
    conf = {
        "spark.master": s.master,
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}",
        "spark.app.name": s.app_name,
        "spark.driver.memory": s.driver_memory,
        **_jars_conf(settings),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": settings.lake_root.rstrip("/") + "/_warehouse",
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": str(s.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.snapshotPartitions": str(max(2, s.shuffle_partitions)),
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "static",
        **_object_store_conf(settings),
    }
    conf.update(s.conf)
    return conf


def _object_store_conf(settings: Settings) -> dict[str, str]:
    """s3a's view of `object_store`: the endpoint delta-rs also gets (lake.io.storage_options).

    Credentials are not set here: s3a's default chain reads them from the environment (or a
    web identity token), on the driver and on every executor.
    """
    o = settings.object_store
    if not (o.endpoint_url or settings.lake_root.startswith("s3a://")):
        return {}
    conf = {
        "spark.hadoop.fs.s3a.endpoint.region": o.region,
        "spark.hadoop.fs.s3a.path.style.access": str(o.path_style).lower(),
    }
    if o.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = o.endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(o.endpoint_url.startswith("https://")).lower()
    return conf


_SESSION: SparkSession | None = None


def get_spark(settings: Settings | None = None) -> SparkSession:
    """Start (once per process) and return the Spark session with Delta and the lake catalog."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    settings = settings or get_settings()
    check_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except (PySparkRuntimeError, RuntimeError) as exc:
        raise SparkSetupError(
            f"Spark did not start: {exc}. The Delta jars ({settings.spark.delta_package}) are fetched "
            f"from Maven Central into {resolve_path(settings.spark.jars_cache)} on first use; check "
            "that Maven Central is reachable (or that the cache is filled) and that Java 17 works."
        ) from exc
    spark.sparkContext.setLogLevel(settings.spark.log_level)
    _remember_jars(spark, settings)
    _SESSION = spark
    register_lake(spark, settings)
    return spark


def stop_spark() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None


def register_lake(spark: SparkSession, settings: Settings) -> list[str]:
    """Create the layer databases and register the Delta tables found in the lake.

    Tables are discovered from the lake's folders (`<root>/<layer>/<table>/_delta_log`), so a
    table another process created since is picked up by calling this again (cheap when nothing
    is new: a folder listing). Returns the tables registered by this call.
    """
    from pyspark.errors import PySparkException

    from lake import io

    registered = []
    for layer in LAYERS:
        if not spark.catalog.databaseExists(layer):
            # The database's location is the layer's folder: `CREATE TABLE gold.x AS ...` in SQL
            # lands in the lake, where every other process finds it.
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer} LOCATION '{join(settings.lake_root, layer)}'")
        for name in io.list_tables(spark, settings, layer):
            if not spark.catalog.tableExists(f"{layer}.{name}"):
                try:
                    io.register_table(spark, layer, name, settings.table_path(layer, name))
                except PySparkException as exc:  # e.g. a table mid-creation by another process
                    log.warning("not registering %s.%s yet: %s", layer, name, str(exc).splitlines()[0])
                    continue
                registered.append(f"{layer}.{name}")
    return registered
