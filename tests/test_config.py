"""config.py: the one integer-floor check and the adapter / few-shot rules every command uses."""

import pytest

from seqpo.config import BARE_MODEL, check_at_least, resolve_adapter_setting, uses_few_shot
from seqpo.errors import SettingsError


def test_check_at_least_names_the_first_setting_below_its_floor():
    from types import SimpleNamespace

    s = SimpleNamespace(chunk=1, k=0, slot=-1, limit=None)
    check_at_least(s, 1, "chunk", "limit")  # None (unset) passes
    with pytest.raises(SettingsError, match=r"^--k must be at least 1, got 0$"):
        check_at_least(s, 1, "chunk", "k", "slot")
    check_at_least(s, -1, "slot")


def test_few_shot_only_on_the_bare_model_unless_told():
    assert uses_few_shot("auto", None) and not uses_few_shot("auto", "/an/adapter")
    assert uses_few_shot("yes", "/an/adapter") and not uses_few_shot("no", None)


def test_train_starts_from_the_shipped_sft_adapter_the_others_run_the_default():
    from seqpo.model_names import shipped_adapter_dir
    from seqpo.rl.train import TrainSettings
    from seqpo.serve import ServeSettings

    sft, default = str(shipped_adapter_dir("en-zh", "sft")), str(shipped_adapter_dir("en-zh"))
    assert resolve_adapter_setting(None, "en-zh", None, default_stage="sft") == TrainSettings().adapter == sft
    assert resolve_adapter_setting(None, "en-zh", None) == default
    assert resolve_adapter_setting(None, "en-zh", "/other/model", default_stage="sft") is None  # bundled model only
    assert resolve_adapter_setting(BARE_MODEL, "en-zh", None, default_stage="sft") is None
    assert TrainSettings(adapter=BARE_MODEL).use_few_shot() and not TrainSettings().use_few_shot()
    serve = ServeSettings()  # no --adapter: each pair's session on its own shipped adapter, the others bare
    serve.session_adapters = {pair: pair for pair in serve.shipped_adapters()}
    assert serve.shipped_adapters()["en-zh"] == default
    assert not serve.session_few_shot("en-zh") and serve.session_few_shot("zh-en")
