"""The transcripts asset records how fast Whisper ran (asr_runs), once per item and model."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.analysis import transcripts
from assets.common import StreamlakeResource
from models.lake import tables
from models.media.library import admit
from models.media.samples import SPEECH, speech_clip
from models.observability.pipeline_metrics import pipeline_stats
from models.settings import get_settings


def test_transcripts_record_the_real_time_factor_once(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    name, sentence = next(iter(SPEECH.items()))
    settings.inbox.mkdir(parents=True)
    speech_clip(sentence, settings.inbox / name, tmp_path)
    (item,) = admit(settings.inbox, settings.library)
    streamlake = StreamlakeResource(data_dir=str(settings.data_dir))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("media", [item.media_id])
        for _ in range(2):  # the second run's timing differs, but the table keeps the first
            result = dg.materialize(
                [transcripts],
                instance=instance,
                partition_key=item.media_id,
                resources={"streamlake": streamlake},
            )
            assert result.success
    runs = tables.read_table(settings, "asr_runs")
    assert runs.height == 1 and tables.open_table(settings, "asr_runs").version() == 0  # type: ignore[union-attr]
    run = runs.row(0, named=True)
    assert run["media_id"] == item.media_id and run["backend"] == settings.asr_backend
    assert run["audio_s"] > 1 and 0 < run["real_time_factor"] == run["elapsed_s"] / run["audio_s"]
    assert pipeline_stats(settings).asr_real_time_factor == {settings.asr_backend: run["real_time_factor"]}
