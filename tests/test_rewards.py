"""Reward transformation (phasic/rewards.py)."""

import re

import numpy as np
import pytest

from phasic.exceptions import ParameterError
from tests.models import good_graph

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_negative_reward_in_reward_transform():
    g = good_graph()
    r = np.ones(7)
    r[2] = -1.5
    with pytest.raises(ParameterError, match=re.escape("-1.5")):
        g.reward_transform(r)
