"""PolicyEvaluator run as a Vertex AI step: through TFX's container entry point, by resource name.

Vertex hands a step its artifacts as ML Metadata resource names; TFX's entry point
(`kubeflow_v2_run_executor`) hashes them into integer ids for the executor and must turn
the blessing's model ids back into names, because the compiled latest-blessed-model
resolver of the next run looks the blessed Model up by name. The test compiles a small
DAG with the resolver and the evaluator, builds the evaluator's ExecutorInput from the
compiled task as Vertex does, runs the compiled container command's entry point, and
resolves the next run's baseline from the blessing it wrote.
"""

import json
import os
import re

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
from tfx.types import standard_artifacts

from bandit_core.policy_evaluation_file import EVALUATION_FILE
from custom_components.policy_evaluator.component import (
    BASELINE_RESOLVER_ID,
    PolicyEvaluator,
    latest_blessed_model_resolver,
)
from custom_components.policy_evaluator.settings import EvaluatorSettings
from tests.custom_components.policy_evaluator.linear_logs import examples_artifact

METADATA_STORE = "projects/123456789/locations/europe-west4/metadataStores/default"
NAMES = {
    "examples": f"{METADATA_STORE}/artifacts/1001",
    "good": f"{METADATA_STORE}/artifacts/1002",
    "bad": f"{METADATA_STORE}/artifacts/1003",
    "blessing": f"{METADATA_STORE}/artifacts/1004",
    "evaluation": f"{METADATA_STORE}/artifacts/1005",
}
BLESSING_QUERY = f"{BASELINE_RESOLVER_ID}-model-blessing-resolver_executor"
MODEL_QUERY = f"{BASELINE_RESOLVER_ID}-model-resolver_executor"


@pytest.fixture(scope="module")
def compiled_job(tmp_path_factory) -> dict:
    """The pipeline spec KubeflowV2DagRunner compiles for candidate + resolver + evaluator."""
    examples = tfx.dsl.Importer(
        source_uri="gs://bucket/examples", artifact_type=standard_artifacts.Examples
    ).with_id("examples")
    candidate = tfx.dsl.Importer(
        source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model
    ).with_id("candidate")
    baseline = latest_blessed_model_resolver()
    evaluator = PolicyEvaluator(
        examples=examples.outputs["result"],
        model=candidate.outputs["result"],
        baseline_model=baseline.outputs["model"],
        reward_min=-20.0,
        reward_max=20.0,
        settings=EvaluatorSettings(bootstrap_samples=300, policy_samples=32, use_simulator=False),
    )
    directory = tmp_path_factory.mktemp("compiled")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="europe-west4-docker.pkg.dev/p/mlbandits/pipeline:1.0"
        ),
        output_dir=str(directory),
        output_filename="job.json",
    )
    runner.run(
        tfx.dsl.Pipeline(
            pipeline_name="vertex-evaluator",
            pipeline_root="gs://bucket/root",
            components=[examples, candidate, baseline, evaluator],
        )
    )
    return json.loads((directory / "job.json").read_text())["pipelineSpec"]


def _runtime_artifact(name: str, uri: str, definition: dict, metadata: dict) -> dict:
    return {"name": name, "uri": uri, "type": definition["artifactType"], "metadata": metadata}


def _executor_input(spec: dict, examples, candidate, baseline, root) -> dict:
    """The evaluator's ExecutorInput: the compiled task's parameters, artifacts by resource name.

    An optional input the resolver found nothing for is absent, as on a first run.
    """
    component = spec["components"]["PolicyEvaluator"]
    task = spec["root"]["dag"]["tasks"]["PolicyEvaluator"]
    inputs = component["inputDefinitions"]["artifacts"]
    outputs = component["outputDefinitions"]["artifacts"]
    artifacts = {
        "examples": _runtime_artifact(
            NAMES["examples"], examples.uri, inputs["examples"],
            {"split_names": examples.split_names},
        ),
        "model": _runtime_artifact(NAMES[candidate], f"{root}/{candidate}", inputs["model"], {}),
    }
    if baseline is not None:
        artifacts["baseline_model"] = _runtime_artifact(
            NAMES[baseline], f"{root}/{baseline}", inputs["baseline_model"], {}
        )
    task_root = root / "PolicyEvaluator_42"
    return {
        "inputs": {
            "artifacts": {key: {"artifacts": [value]} for key, value in artifacts.items()},
            "parameters": {
                key: value["runtimeValue"]["constantValue"]
                for key, value in task["inputs"]["parameters"].items()
            },
        },
        "outputs": {
            "artifacts": {
                key: {
                    "artifacts": [
                        _runtime_artifact(NAMES[key], str(task_root / key), outputs[key], {})
                    ]
                }
                for key in ("blessing", "evaluation")
            },
            "outputFile": str(task_root / "executor_output.json"),
        },
    }


def _run_step(spec: dict, executor_input: dict) -> pipeline_spec_pb2.ExecutorOutput:
    """Runs the compiled container command's entry point the way the Vertex step does."""
    container = spec["deploymentSpec"]["executors"]["PolicyEvaluator_executor"]["container"]
    assert container["command"][-1] == kubeflow_v2_run_executor.__name__
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    kubeflow_v2_run_executor.main(kubeflow_v2_run_executor._parse_flags(args))
    with open(executor_input["outputs"]["outputFile"]) as f:
        return json_format.Parse(f.read(), pipeline_spec_pb2.ExecutorOutput())


def _resolver_filter(spec: dict, executor: str, blessing_metadata: dict) -> str:
    """A resolver query of the next run, its placeholders filled from the blessing's metadata."""
    query = spec["deploymentSpec"]["executors"][executor]["resolver"]["outputArtifactQueries"]
    (filter_text,) = (q["filter"] for q in query.values())
    return re.sub(
        r"\{\{\$\.inputs\.artifacts\['input'\]\.metadata\['(\w+)'\]\}\}",
        lambda m: str(blessing_metadata[m.group(1)]),
        filter_text,
    )


@pytest.mark.parametrize(
    "candidate, baseline, blessed",
    [("good", None, True), ("good", "bad", True), ("bad", "good", False)],
    ids=["first-run", "better-than-baseline", "worse-than-baseline"],
)
def test_blessing_names_the_models_so_the_next_run_resolves_its_baseline(
    compiled_job, models, eval_rows, tmp_path, candidate, baseline, blessed
):
    for name, model in models.items():
        os.symlink(model.uri, tmp_path / name)
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    executor_input = _executor_input(compiled_job, examples, candidate, baseline, tmp_path)

    output = _run_step(compiled_job, executor_input)

    (blessing,) = output.artifacts["blessing"].artifacts
    metadata = json_format.MessageToDict(blessing.metadata)
    assert blessing.name == NAMES["blessing"]
    assert metadata["current_model_id"] == NAMES[candidate]
    assert metadata["current_model"] == f"{tmp_path}/{candidate}"
    if baseline is None:
        assert "baseline_model_id" not in metadata
    else:
        assert metadata["baseline_model_id"] == NAMES[baseline]

    blessing_query = _resolver_filter(compiled_job, BLESSING_QUERY, metadata)
    wanted = re.search(r"metadata\.blessed\.number_value=(\d+)", blessing_query).group(1)
    assert (metadata["blessed"] == float(wanted)) is blessed
    assert _resolver_filter(compiled_job, MODEL_QUERY, metadata) == (
        f'schema_title="tfx.Model" AND state=LIVE AND name="{NAMES[candidate]}"'
    )

    evaluation_dir = executor_input["outputs"]["artifacts"]["evaluation"]["artifacts"][0]["uri"]
    with open(os.path.join(evaluation_dir, EVALUATION_FILE)) as f:
        report = json.load(f)
    assert report["blessed"] is blessed
    if baseline is None:
        assert report["baseline"] is None
    else:
        assert report["baseline"]["agent"] == {"good": "LinUCB", "bad": "LinTS"}[baseline]
