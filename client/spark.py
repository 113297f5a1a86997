"""Score a Spark DataFrame too big for one machine with the encrypted scoring service.

:func:`score_dataframe` adds encrypted predictions to a DataFrame through ``mapInPandas``:
every Spark task encrypts its partition's records (full batches of 8,192 records in
coefficient lanes, across Arrow batch boundaries), sends them to the endpoint, decrypts the
answers and yields the predictions. The service never sees a record or a prediction; Spark
never holds more than a task's share of the work.

What travels where:

* The key pair travels inside the task closure as its 2,163-byte packed form
  (:meth:`SecretKeys.to_bytes`), never through ``SparkContext.broadcast`` (which writes a
  plain pickle of its value under ``spark.local.dir``). Turn on Spark's network and disk
  encryption on clusters (``docs/spark.md``).
* The driver describes the model once and pins its hash (``expect_model_hash``): a task that
  meets another model (a redeploy mid-job) fails with :class:`client.ModelChanged` instead
  of mixing two models' predictions.
* The driver uploads the public bundle once (``upload=True``, the default) and never
  deletes it: the returned DataFrame is lazy, so delete the bundle yourself after the last
  action that reads it (:func:`delete_keys`). Tasks never upload: a task that finds the
  bundle gone fails with :class:`client.ServiceError` ``keys_not_found``.
* Retried or speculative tasks score their records again with fresh encryption and fresh
  server noise: scores agree within the documented noise (+-2**-19 per score), labels agree.

pyspark is an optional dependency (``pip install he-scoring[spark]``); importing this
module does not import it, the functions do.

Example:
    >>> from client import SecretKeys
    >>> from client.spark import score_dataframe, delete_keys
    >>> keys = SecretKeys.from_bytes(base64.b64decode(dbutils.secrets.get("he", "keys")))    # doctest: +SKIP
    >>> scored = score_dataframe(df, "https://myapp.azurewebsites.net", keys,                  # doctest: +SKIP
    ...                          features=[f"pixel{i}" for i in range(784)], id_col="id",
    ...                          function_key=dbutils.secrets.get("he", "function-key"))
    >>> scored.write.parquet("abfss://.../predictions")                                        # doctest: +SKIP
    >>> delete_keys("https://myapp.azurewebsites.net", keys, function_key=...)                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from scoring.protocol import ModelDescription

from .keys import SecretKeys
from .scoring_client import OUTPUTS, ScoringClient
from .transport import DEFAULT_TIMEOUT

if TYPE_CHECKING:  # pyspark is optional: only type checkers import it here
    import pandas as pd
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructField, StructType

logger = logging.getLogger(__name__)

LABEL_COLUMN = "prediction"
SCORE_COLUMN = "score"
PROBA_COLUMN = "proba"
TASK_NAME = "encrypted_scoring"
PACKED_COLUMN = "__he_scoring_features"


def score_dataframe(df: DataFrame, endpoint: str, keys: SecretKeys, *, features: Sequence[str] | str,
                    id_col: str | None = None, output: str = "label", function_key: str | None = None,
                    expect_model_hash: str | None = None, upload: bool = True, timeout: float = DEFAULT_TIMEOUT,
                    processes: int | None = None, batch_threshold: int | None = None, binary: bool = True,
                    route_prefix: str = "api") -> DataFrame:
    """Encrypted predictions for every row of ``df``, as a new (lazy) DataFrame.

    The driver describes the served model (one ``GET``), pins its hash unless
    ``expect_model_hash`` is given, checks the columns, and uploads the public bundle once
    (unless ``upload=False``: it is already there). Nothing is scored until an action runs;
    then each task builds its own :class:`ScoringClient` (``upload=False``, the pinned hash)
    from the packed keys in its closure and streams its partition through
    :meth:`ScoringClient.score_stream`.

    Args:
        df: the records; only ``id_col`` and the feature columns are read.
        endpoint: the service's base URL (``https://<app>.azurewebsites.net``), or the
            container's scoring URL ending in ``/score`` (docs/aml.md).
        keys: the key pair; its packed form (:meth:`SecretKeys.to_bytes`) goes to the tasks.
        features: the model's features in its order: numeric column names, or the name of one
            array column (``array<double>``, e.g. ``pyspark.ml.functions.vector_to_array``).
            Either way they reach the tasks as one array column built in the JVM (several times
            cheaper to hand to Python than hundreds of columns). Nulls and values beyond the
            model's input bound fail the task (fill or filter first).
        id_col: a column copied to the output beside the predictions, with its type.
        output: ``"label"``: one column ``prediction`` with the class labels in their own type
            (long, string, boolean or double; for a regressor its values, double, or
            ``prediction_0``... for several outputs); ``"scores"``: the decrypted scores,
            ``score`` for one output, else ``score_0``... ``score_{k-1}`` (doubles, in the order
            of the outputs: ``describe_model().classes`` for multiclass models);
            ``"proba"``: ``proba_0``... ``proba_{c-1}``, one per class in the order of
            ``classes`` (computed in the task from the scores, as scikit-learn does).
        function_key: the Functions host key (``x-functions-key``); it travels to the tasks.
        expect_model_hash: the model the job must score with; None pins the one served now.
        upload: upload the public bundle from the driver (once); False: it is already where
            the service reads it. Tasks never upload to storage. Against the container
            (which takes no uploads), True sends the bundle inline with each request and
            False lets the container read it from its own storage.
        timeout: seconds for each HTTP request of the tasks and the driver.
        processes: encryption processes per task; None: the task's ``spark.task.cpus``.
        batch_threshold: the client's rule for batches (``ScoringClient(batch_threshold=)``).
        binary: the binary wire form (a third smaller than JSON).
        route_prefix: the Functions host's route prefix.

    Returns:
        A DataFrame of ``id_col`` (if given) then the prediction columns, one row per input
        row, in the input's order within each partition.

    Raises:
        ValueError: for an unknown ``output``, a model without probabilities asked for
            ``"proba"``, columns missing or not matching the model's feature count, an
            ``id_col`` named like an output column, or keys that cannot be packed.
        client.ModelChanged: if the service serves another model than ``expect_model_hash``.
        client.ServiceError: if the upload is refused.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    packed = keys.to_bytes()  # ValueError for keys that cannot be packed, before any request
    driver = ScoringClient(endpoint, function_key=function_key, timeout=timeout, keys=keys, binary=binary,
                           route_prefix=route_prefix, upload=upload, expect_model_hash=expect_model_hash,
                           progress=False)
    try:
        info = driver.describe_model()
        schema = output_schema(info, output, id_field=_id_field(df, id_col))
        feature_list = _check_features(df, features, info)
        inline = upload and not driver.transport.stores_keys
        if upload and driver.transport.stores_keys:
            driver.upload_keys()  # once, from the driver; 200 if the bundle was already there
    finally:
        driver.close()
    scorer = _PartitionScorer(endpoint=endpoint, packed_keys=packed, model_hash=info.model_hash, features=feature_list,
                              id_col=id_col, output=output, function_key=function_key, timeout=timeout,
                              processes=processes, batch_threshold=batch_threshold, binary=binary,
                              route_prefix=route_prefix, inline=inline, columns=tuple(schema.fieldNames()))
    logger.info("scoring a DataFrame with model %s (%s, %d features)", info.model_hash[:12], output, info.n_features)
    from pyspark.sql import functions as F

    read = ([F.col(_quoted(id_col))] if id_col else []) + [_packed_features(features)]
    return df.select(*read).mapInPandas(scorer, schema)


def delete_keys(endpoint: str, keys: SecretKeys, *, function_key: str | None = None,
                timeout: float = DEFAULT_TIMEOUT, route_prefix: str = "api") -> bool:
    """Delete the public bundle from the service after the job (False if it was not there).

    Call it after the last action on :func:`score_dataframe`'s result has finished: a task
    still running (a straggler, a retry) then fails with ``keys_not_found`` and uploads
    nothing.
    """
    with ScoringClient(endpoint, function_key=function_key, timeout=timeout, keys=keys,
                       route_prefix=route_prefix) as client:
        return client.delete_keys()


def output_schema(info: ModelDescription, output: str, *, id_field: StructField | None = None) -> StructType:
    """The schema :func:`score_dataframe` returns for a model and an output kind."""
    from pyspark.sql.types import DoubleType, StructField, StructType

    fields = [id_field] if id_field is not None else []
    if output == "label" and info.classes is not None:
        fields.append(StructField(LABEL_COLUMN, _label_type(info.classes), nullable=False))
    elif output == "label":
        fields += _numbered(LABEL_COLUMN, info.n_outputs, DoubleType())
    elif output == "scores":
        fields += _numbered(SCORE_COLUMN, info.n_outputs, DoubleType())
    elif output == "proba":
        if info.proba is None or info.classes is None:
            raise ValueError("the served model does not offer probabilities (output='proba'); "
                             "use output='scores' or 'label'")
        fields += _numbered(PROBA_COLUMN, len(info.classes), DoubleType(), always=True)
    else:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"id_col {id_field.name!r} has the name of an output column; rename it first")
    return StructType(fields)


def _numbered(prefix: str, count: int, kind: DataType, *, always: bool = False) -> list[StructField]:
    from pyspark.sql.types import StructField

    if count == 1 and not always:
        return [StructField(prefix, kind, nullable=False)]
    return [StructField(f"{prefix}_{i}", kind, nullable=False) for i in range(count)]


def _label_type(classes: tuple) -> DataType:
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType

    if all(isinstance(c, bool) for c in classes):
        return BooleanType()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return LongType()
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return DoubleType()
    return StringType()


def _id_field(df: DataFrame, id_col: str | None) -> StructField | None:
    if id_col is None:
        return None
    if id_col not in df.columns:
        raise ValueError(f"id_col {id_col!r} is not a column of the DataFrame")
    return df.schema[id_col]


def _check_features(df: DataFrame, features: Sequence[str] | str, info: ModelDescription) -> tuple[str, ...]:
    if isinstance(features, str):
        from pyspark.sql.types import ArrayType, NumericType

        if features not in df.columns:
            raise ValueError(f"feature column {features!r} is not a column of the DataFrame")
        kind = df.schema[features].dataType
        if not (isinstance(kind, ArrayType) and isinstance(kind.elementType, NumericType)):
            raise ValueError(f"feature column {features!r} is {kind.simpleString()}, not an array of numbers "
                             "(for ML vectors: pyspark.ml.functions.vector_to_array)")
        return (features,)
    features = tuple(features)
    missing = [name for name in features if name not in df.columns]
    if missing:
        raise ValueError(f"feature columns missing from the DataFrame: {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if len(features) != info.n_features:
        raise ValueError(f"the served model takes {info.n_features} features, not {len(features)}")
    from pyspark.sql.types import NumericType

    other = [f"{name} ({df.schema[name].dataType.simpleString()})" for name in features
             if not isinstance(df.schema[name].dataType, NumericType)]
    if other:
        raise ValueError(f"feature columns must be numeric: {', '.join(other[:5])}"
                         + (f" and {len(other) - 5} more" if len(other) > 5 else ""))
    return features


class _PartitionScorer:
    """What each task runs: rebuild the keys, score the partition's Arrow batches in order.

    Pickled into the task closure (by reference to this module, which must be installed on
    the executors, plus these fields). Its name and repr, which Spark shows in plans and
    logs, carry no key material.
    """

    __name__ = TASK_NAME
    __qualname__ = TASK_NAME

    def __init__(self, *, endpoint: str, packed_keys: bytes, model_hash: str, features: tuple[str, ...],
                 id_col: str | None, output: str, function_key: str | None, timeout: float,
                 processes: int | None, batch_threshold: int | None, binary: bool, route_prefix: str,
                 inline: bool, columns: tuple[str, ...]) -> None:
        self.endpoint = endpoint
        self.packed_keys = packed_keys
        self.model_hash = model_hash
        self.features = features
        self.id_col = id_col
        self.output = output
        self.function_key = function_key
        self.timeout = timeout
        self.processes = processes
        self.batch_threshold = batch_threshold
        self.binary = binary
        self.route_prefix = route_prefix
        self.inline = inline
        self.columns = columns

    def __repr__(self) -> str:
        return f"{TASK_NAME}(endpoint={self.endpoint!r}, model={self.model_hash[:12]}, output={self.output!r})"

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        first = next(batches, None)
        if first is None:
            return  # an empty partition: no keys rebuilt, no request
        ids: deque = deque()

        def records() -> Iterator[np.ndarray]:
            for frame in _chain(first, batches):
                if self.id_col is not None:
                    ids.append(frame[self.id_col].reset_index(drop=True))
                yield self._matrix(frame)

        client = ScoringClient(self.endpoint, function_key=self.function_key, timeout=self.timeout,
                               keys=SecretKeys.from_bytes(self.packed_keys), binary=self.binary,
                               route_prefix=self.route_prefix, upload=self.inline,
                               expect_model_hash=self.model_hash, processes=self.processes or _task_cpus(),
                               progress=False, batch_threshold=self.batch_threshold)
        try:
            for result in client.score_stream(records(), output=self.output):
                yield self._frame(result, ids.popleft() if self.id_col is not None else None)
        finally:
            client.close()

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        column = frame[PACKED_COLUMN]
        if not len(column):
            return np.empty((0, 0))
        try:
            return np.stack(column.to_numpy()).astype(np.float64)
        except (TypeError, ValueError) as exc:  # a null row or element, or rows of different lengths
            raise ValueError(f"the features ({', '.join(self.features[:3])}{', ...' if len(self.features) > 3 else ''})"
                             " must be non-null numbers, the same count in every row; fill or drop nulls "
                             "first") from exc

    def _frame(self, result: np.ndarray, ids) -> pd.DataFrame:
        import pandas as pd

        names = [name for name in self.columns if name != self.id_col]
        values = np.asarray(result)
        if values.ndim == 1:
            values = values[:, None]
        if values.dtype.kind == "U":
            values = values.astype(object)
        frame = pd.DataFrame({name: values[:, i] for i, name in enumerate(names)})
        if ids is not None:
            frame.insert(0, self.id_col, ids)
        return frame


def _packed_features(features: Sequence[str] | str):
    """The features as one array<double> column, built in the JVM.

    Spark hands a task its rows as Arrow batches; one list column converts several times
    faster than hundreds of scalar columns (784 for MNIST: bench/spark.py).
    """
    from pyspark.sql import functions as F

    if isinstance(features, str):
        return F.col(_quoted(features)).cast("array<double>").alias(PACKED_COLUMN)
    return F.array(*[F.col(_quoted(name)).cast("double") for name in features]).alias(PACKED_COLUMN)


def _quoted(name: str) -> str:
    """A column name Spark takes literally (dots and backticks included)."""
    return "`" + name.replace("`", "``") + "`"


def _chain(first, rest):
    yield first
    yield from rest


def _task_cpus() -> int:
    """The cores Spark gave this task (``spark.task.cpus``), 1 outside a task or on old Spark."""
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        return max(1, int(context.cpus())) if context is not None else 1
    except Exception:  # noqa: BLE001 - Spark < 3.3 has no cpus(); one process per task then
        return 1


__all__ = ["score_dataframe", "delete_keys", "output_schema"]
