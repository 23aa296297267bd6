"""Tests for alexnet_tf.evaluation.classification and the evaluate command."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.data import damaged_shards
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.evaluation import classification as evaluation
from alexnet_tf.serving import saved_model as serving


def _fake_classifier(num_classes):
    """'Predicts' the class written in pixel [0, 0, 0] of each image."""
    def probabilities(images):
        return tf.one_hot(tf.cast(images[:, 0, 0, 0], tf.int32), num_classes)
    return probabilities


def test_evaluate_centre_crop_counts():
    images = np.zeros((6, 4, 4, 3), np.float32)
    images[:, 0, 0, 0] = [0, 1, 2, 3, 4, 0]
    labels = np.array([0, 1, 2, 0, 0, 1])
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    counts = evaluation.evaluate(_fake_classifier(8), batches)
    centre = counts[evaluation.CENTRE]
    assert (centre.num_examples, centre.top1_correct) == (6, 3)
    assert centre.top1_error == pytest.approx(0.5)


def test_evaluate_ten_crop_averages_and_reports_centre():
    images = np.zeros((2, 10, 4, 4, 3), np.float32)
    images[0, :, 0, 0, 0] = 1  # Image 0: all crops say 1 (right).
    images[1, :6, 0, 0, 0] = 2  # Image 1: most crops say 2 (wrong), the centre says 3 (right).
    images[1, 6:, 0, 0, 0] = 3
    labels = np.array([1, 3])
    batches = [(tf.constant(images), tf.constant(labels))]
    counts = evaluation.evaluate(_fake_classifier(5), batches, ten_crop=True, centre_index=8)
    assert counts[evaluation.TEN_CROP].top1_correct == 1
    assert counts[evaluation.CENTRE].top1_correct == 2
    assert counts[evaluation.TEN_CROP].top5_correct == 2


def test_evaluate_rejects_centre_batches_in_ten_crop_mode():
    batches = [(tf.zeros((2, 4, 4, 3)), tf.zeros((2,), tf.int64))]
    with pytest.raises(ValueError, match="rank 5"):
        evaluation.evaluate(_fake_classifier(3), batches, ten_crop=True)


def test_evaluate_members_counts_the_mean_of_their_softmax():
    # Each member is sure of a wrong class; their mean favours the right one, class 1.
    member_a = lambda images: tf.tile([[0.6, 0.4, 0.0]], [tf.shape(images)[0], 1])  # noqa: E731
    member_b = lambda images: tf.tile([[0.0, 0.4, 0.6]], [tf.shape(images)[0], 1])  # noqa: E731
    labels = np.array([1, 1, 0])
    batches = [(tf.zeros((3, 10, 4, 4, 3)), tf.constant(labels))]
    ensemble_counts, (counts_a, counts_b) = evaluation.evaluate_members(
            [member_a, member_b], batches, ten_crop=True, centre_index=0)
    for name in (evaluation.CENTRE, evaluation.TEN_CROP):
        assert (counts_a[name].top1_correct, counts_b[name].top1_correct) == (1, 0), name
        assert ensemble_counts[name].top1_correct == 2, name
        assert ensemble_counts[name].num_examples == 3, name
    single_ensemble, (single,) = evaluation.evaluate_members(
            [member_a], [(tf.zeros((3, 4, 4, 3)), tf.constant(labels))])
    assert single_ensemble is None and single[evaluation.CENTRE].top1_correct == 1


# End to end: a checkpointed run (make_run), validation records written with the schema,
# evaluated in-process, through a named checkpoint and via the entry point.

NUM_RECORDS = 10


def _expected_counts(run, images, labels):
    """Counts computed here from the model on preprocess_for_eval's ten crops."""
    centre_top1 = centre_top5 = ten_top1 = ten_top5 = 0
    for image, label in zip(images, labels):
        crops = preprocessing.preprocess_for_eval(image, stats=run["stats"],
                                                  crop_size=run["crop_size"],
                                                  ten_crop=True)  # (10, S, S, 3)
        crop_probabilities = tf.nn.softmax(run["model"](crops, training=False)).numpy()
        for probabilities, counts in ((crop_probabilities[0], "centre"),
                                      (crop_probabilities.mean(axis=0), "ten")):
            order = np.argsort(-probabilities, kind="stable")
            top1, top5 = int(order[0] == label), int(label in order[:5])
            if counts == "centre":
                centre_top1, centre_top5 = centre_top1 + top1, centre_top5 + top5
            else:
                ten_top1, ten_top5 = ten_top1 + top1, ten_top5 + top5
    return (centre_top1, centre_top5), (ten_top1, ten_top5)


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, make_run, make_stats, random_image, encode_image,
                  randomize_weights):
    root = tmp_path_factory.mktemp("evaluation")
    stats = make_stats(mean_image=np.random.default_rng(1).uniform(90, 140, (32, 32, 3)))
    stats_path = str(root / stats_lib.STATS_FILE)
    stats_lib.save_stats(stats, stats_path)
    run = make_run(root / "run", [f"class {index}" for index in range(6)], input_size=64,
                   mean_mode="image", stats_path=stats_path)
    run.update(stats=stats, crop_size=run["config"].input_size)
    images = [encode_image(random_image(200 + 13 * i, 300 - 11 * i, 100 + i))
              for i in range(NUM_RECORDS)]
    # Labels: the model's own centre-crop answer for half the images, its last choice for
    # the rest, so that the counts are neither all right nor all wrong.
    labels = []
    for index, image in enumerate(images):
        crop = preprocessing.preprocess_for_eval(image, stats=run["stats"],
                                                 crop_size=run["crop_size"])
        order = np.argsort(-run["model"](crop[None], training=False).numpy()[0], kind="stable")
        labels.append(int(order[0] if index % 2 == 0 else order[-1]))
    data_dir = root / "data"
    data_dir.mkdir()
    with tf.io.TFRecordWriter(str(data_dir / schema.shard_name(schema.VALIDATION, 0, 1))) as writer:
        for index, (image, label) in enumerate(zip(images, labels)):
            writer.write(schema.make_example(
                    encoded=image, image_format="JPEG", height=0, width=0,
                    filename=f"val_{index}.JPEG", label=label, synset=f"n0000000{label}"))
    (data_dir / schema.LABELS_FILE).write_text(json.dumps(run["labels"]))
    expected = _expected_counts(run, images, labels)
    # A second, different checkpoint: the default (latest) must now differ from ckpt-1.
    randomize_weights(run["model"], seed=5)
    run["manager"].save()
    return dict(run, data_dir=str(data_dir), expected=expected)


def test_run_named_checkpoint_ten_crop(evaluated_run, tmp_path):
    (centre_top1, centre_top5), (ten_top1, ten_top5) = evaluated_run["expected"]
    assert 0 < centre_top1 < NUM_RECORDS
    loaded = model_source.load(model_dir=evaluated_run["model_dir"], checkpoint="ckpt-1")
    output = evaluation.default_output(loaded, evaluated_run["model_dir"], ten_crop=True)
    counts = evaluation.run(evaluated_run["data_dir"], loaded, output=output, ten_crop=True,
                            batch_size=4)
    centre, ten = counts[evaluation.CENTRE], counts[evaluation.TEN_CROP]
    assert (centre.num_examples, centre.top1_correct, centre.top5_correct) == (
            NUM_RECORDS, centre_top1, centre_top5)
    assert (ten.num_examples, ten.top1_correct, ten.top5_correct) == (
            NUM_RECORDS, ten_top1, ten_top5)
    assert output == os.path.join(evaluated_run["model_dir"], "eval", "ckpt-1-10crop.json")
    written = json.loads(open(output).read())
    assert written["source"].endswith("ckpt-1")
    assert written[evaluation.TEN_CROP]["top1_correct"] == ten_top1


def test_run_defaults_to_latest_checkpoint(evaluated_run, tmp_path):
    output = str(tmp_path / "latest.json")
    loaded = model_source.load(model_dir=evaluated_run["model_dir"])
    counts = evaluation.run(evaluated_run["data_dir"], loaded, batch_size=8, output=output)
    assert json.loads(open(output).read())["source"].endswith("ckpt-2")
    assert counts[evaluation.CENTRE].num_examples == NUM_RECORDS


@pytest.mark.slow
def test_entry_point_on_saved_model(evaluated_run, tmp_path):
    # Export ckpt-1, then evaluate the SavedModel alone: same counts as the checkpoint.
    loaded = model_source.load(model_dir=evaluated_run["model_dir"], checkpoint="ckpt-1")
    module = serving.ServingModule(loaded.keras_model, loaded.settings, labels=loaded.labels)
    version_dir = serving.export(module, str(tmp_path / "export"), verify=False)
    output = tmp_path / "saved_model_eval.json"
    process = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.evaluate", f"--saved_model={version_dir}",
             f"--data_dir={evaluated_run['data_dir']}", "--ten_crop", "--batch_size=3",
             f"--output={output}"],
            capture_output=True, text=True, timeout=180,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 0, process.stderr[-3000:]
    assert "ten crop average" in process.stdout and "top-5 error" in process.stdout
    written = json.loads(output.read_text())
    (centre_top1, centre_top5), (ten_top1, ten_top5) = evaluated_run["expected"]
    assert written[evaluation.CENTRE]["top1_correct"] == centre_top1
    assert written[evaluation.CENTRE]["top5_correct"] == centre_top5
    assert written[evaluation.TEN_CROP]["top1_correct"] == ten_top1
    assert written[evaluation.TEN_CROP]["top5_correct"] == ten_top5


@pytest.mark.parametrize("how, reason", [("truncate", "truncated"), ("flip", "corrupted")])
def test_a_damaged_shard_is_named_or_skipped_and_recorded(evaluated_run, tmp_path,
                                                         damage_shard, how, reason, caplog):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in os.listdir(evaluated_run["data_dir"]):
        (data_dir / name).write_bytes((pathlib.Path(evaluated_run["data_dir"]) / name).read_bytes())
    shard = str(data_dir / schema.shard_name(schema.VALIDATION, 0, 1))
    where = damage_shard(shard, how)
    loaded = model_source.load(model_dir=evaluated_run["model_dir"])
    with pytest.raises(damaged_shards.DamagedShardError,
                       match=f"^{shard}: .*record {where['record']} \\(at byte "
                             f"{where['offset']}\\) is {reason}.*--skip_bad_records"):
        evaluation.run(str(data_dir), loaded, batch_size=4, output=str(tmp_path / "no.json"))
    assert not os.path.exists(tmp_path / "no.json")
    output = str(tmp_path / "skipped.json")
    counts = evaluation.run(str(data_dir), loaded, batch_size=4, output=output,
                            skip_bad_records=True)
    assert counts[evaluation.CENTRE].num_examples == where["record"]  # the records before it
    written = json.loads(open(output).read())
    assert written["skipped_bad_records"] == 0
    [damage] = written["damaged_shards"]
    assert (damage["path"], damage["offset"], damage["record"]) == (
            shard, where["offset"], where["record"])
    assert any(shard in record.getMessage() and "damaged shard" in record.getMessage()
               for record in caplog.records if record.levelname == "WARNING")


def _evaluate(*flags):
    return subprocess.run([sys.executable, "-m", "alexnet_tf.evaluate", *flags],
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.slow
def test_entry_point_skips_a_damaged_latest_checkpoint(evaluated_run, tmp_path,
                                                       corrupt_checkpoint):
    """The newest checkpoint that reads is evaluated, with a warning naming the damaged
    one; a damaged checkpoint named by --checkpoint is a one-line error instead."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(evaluated_run["model_dir"], model_dir)
    latest = os.path.join(model_dir, "checkpoints", "ckpt-2")
    corrupt_checkpoint(latest, "truncate-data")
    output = tmp_path / "eval.json"
    process = _evaluate(f"--model_dir={model_dir}", f"--data_dir={evaluated_run['data_dir']}",
                        f"--output={output}", "--noprogress_bar")
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"Skipping damaged checkpoint {latest}: its data does not read" in process.stderr
    written = json.loads(output.read_text())
    assert written["source"].endswith("ckpt-1")
    (centre_top1, centre_top5), _ = evaluated_run["expected"]  # ckpt-1's counts
    assert written[evaluation.CENTRE]["top1_correct"] == centre_top1

    named = _evaluate(f"--model_dir={model_dir}", f"--data_dir={evaluated_run['data_dir']}",
                      "--checkpoint=ckpt-2", f"--output={tmp_path / 'named.json'}")
    assert named.returncode == 2 and "Traceback" not in named.stderr
    assert (f"error: checkpoint 'ckpt-2' ({latest}) is damaged: its data does not read"
            in named.stderr.strip().splitlines()[-1])
    assert not (tmp_path / "named.json").exists()


# Ensembles: the run's ckpt-1 and a second run with the same classes and preprocessing.

@pytest.fixture(scope="module")
def ensemble_members(evaluated_run, make_run):
    """(members as model_source.load gives them, expected counts (ensemble, [per member]) as
    ((centre top-1, top-5), (10-crop top-1, top-5)), computed here with NumPy)."""
    second = make_run(os.path.join(os.path.dirname(evaluated_run["model_dir"]), "run2"),
                      [label["name"] for label in evaluated_run["labels"]], seed=9,
                      input_size=64, mean_mode="image",
                      stats_path=evaluated_run["config"].stats_path)
    members = [model_source.load(model_dir=evaluated_run["model_dir"], checkpoint="ckpt-1"),
               model_source.load(model_dir=second["model_dir"])]
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(
            os.path.join(evaluated_run["data_dir"], "validation-*")))
    hits = np.zeros((3, 4), int)  # rows: member 1, member 2, ensemble
    for record in records:
        example = schema.parse_example(record)
        image, label = example[schema.IMAGE_ENCODED], int(example[schema.LABEL])
        crops = preprocessing.preprocess_for_eval(image, stats=evaluated_run["stats"],
                                                  crop_size=64, ten_crop=True)
        per_member = [tf.nn.softmax(member.keras_model(crops, training=False)).numpy()
                      for member in members]  # each (10, C)
        for row, probabilities in enumerate(per_member + [np.mean(per_member, axis=0)]):
            for column, scores in ((0, probabilities[0]), (2, probabilities.mean(axis=0))):
                order = np.argsort(-scores, kind="stable")
                hits[row, column] += order[0] == label
                hits[row, column + 1] += label in order[:5]
    assert hits[0, 0] != hits[1, 0] or hits[0, 2] != hits[1, 2], "members too alike to test"
    return members, hits


def _hits(counts):
    return [counts[evaluation.CENTRE].top1_correct, counts[evaluation.CENTRE].top5_correct,
            counts[evaluation.TEN_CROP].top1_correct, counts[evaluation.TEN_CROP].top5_correct]


def test_run_members_reports_each_member_and_the_ensemble(evaluated_run, ensemble_members,
                                                          tmp_path):
    members, hits = ensemble_members
    output = str(tmp_path / "ensemble.json")
    ensemble_counts, member_counts = evaluation.run_members(
            evaluated_run["data_dir"], members, output=output, ten_crop=True, batch_size=4)
    assert [_hits(counts) for counts in member_counts] == hits[:2].tolist()
    assert _hits(ensemble_counts) == hits[2].tolist()
    written = json.loads(open(output).read())
    assert written["source"] == [member.path for member in members]
    assert [entry[evaluation.TEN_CROP]["top1_correct"] for entry in written["members"]] == [
            hits[0, 2], hits[1, 2]]
    assert written[evaluation.CENTRE]["top1_correct"] == hits[2, 0]
    assert evaluation.default_output(members, None, ten_crop=True).startswith("eval-ensemble-")


def test_run_members_refuses_other_preprocessing(evaluated_run, ensemble_members, make_run,
                                                 tmp_path):
    other = make_run(tmp_path / "rgb", [label["name"] for label in evaluated_run["labels"]],
                     input_size=64, mean_mode="rgb", stats_path=evaluated_run["config"].stats_path)
    members = [ensemble_members[0][0], model_source.load(model_dir=other["model_dir"])]
    with pytest.raises(errors.InvalidInputError, match=r"member 2 .*it subtracts the "
                       r"per-channel mean \[.*\], member 1 a 32x32 mean image"):
        evaluation.run_members(evaluated_run["data_dir"], members, output=str(tmp_path / "x.json"))
    assert not os.path.exists(tmp_path / "x.json")


@pytest.mark.slow
def test_entry_point_on_an_ensemble(evaluated_run, ensemble_members, tmp_path):
    members, hits = ensemble_members
    output = tmp_path / "ensemble.json"
    second_run = os.path.dirname(os.path.dirname(members[1].path))  # run2/checkpoints/ckpt-1
    process = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.evaluate",
             f"--model_dir={evaluated_run['model_dir']},{second_run}",
             "--checkpoint=ckpt-1,ckpt-1", f"--data_dir={evaluated_run['data_dir']}",
             "--ten_crop", "--batch_size=4", f"--output={output}"],
            capture_output=True, text=True, timeout=180,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"member 2: alexnet ckpt-1 ({members[1].path})" in process.stdout
    rows = [line.split() for line in process.stdout.splitlines()
            if line.startswith(("member ", "ensemble ")) and line.endswith(f" {NUM_RECORDS}")]
    # Rows member 1, member 2, ensemble; columns centre then 10-crop top-1 and top-5 error.
    assert [row[0] for row in rows] == ["member", "member", "ensemble"]
    errors_printed = [row[-5:-1] for row in rows]
    expected = [[f"{100 * (NUM_RECORDS - hit) / NUM_RECORDS:.2f}%" for hit in member_hits]
                for member_hits in hits]
    assert errors_printed == expected
    written = json.loads(output.read_text())
    assert written[evaluation.TEN_CROP]["top1_correct"] == hits[2, 2]
    assert [entry[evaluation.CENTRE]["top5_correct"] for entry in written["members"]] == [
            hits[0, 1], hits[1, 1]]
