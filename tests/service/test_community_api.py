"""The community routes: the vote over the staking rounds, split stakes, MTF per household."""

from __future__ import annotations

from tests.service.conftest import run_api

OPTIONS = {
    "options": [
        {"name": "lifeline", "label": "Bigger lifeline", "policy": {"lifeline_wh_per_day": 300}},
        {"name": "business", "label": "More for businesses", "policy": {"lifeline_wh_per_day": 80}},
    ]
}


def test_vote_round_trip_and_roles(tmp_path):
    async def calls(rig, c):
        op = ("operator", rig.passwords["operator"])
        amina = ("amina", rig.passwords["amina"])
        bala = ("bala", rig.passwords["bala"])
        h1, h2 = rig.site.households[0].id, rig.site.households[1].id
        out = {}
        out["resident_offers"] = await c.put(
            "/api/community/vote/options", json=OPTIONS, auth=amina
        )
        out["anonymous_offers"] = await c.put("/api/community/vote/options", json=OPTIONS)
        out["one_option"] = await c.put(
            "/api/community/vote/options", json={"options": OPTIONS["options"][:1]}, auth=op
        )
        out["extra_field"] = await c.put(
            "/api/community/vote/options", json={**OPTIONS, "round": 7}, auth=op
        )
        bad_value = {
            "options": [{**OPTIONS["options"][0], "policy": {"x": "big"}}, OPTIONS["options"][1]]
        }
        out["string_value"] = await c.put("/api/community/vote/options", json=bad_value, auth=op)
        nan = (
            '{"options": [{"name": "a", "label": "a", "policy": {"x": NaN}},'
            ' {"name": "b", "label": "b"}]}'
        )
        out["nan"] = await c.put(
            "/api/community/vote/options",
            content=nan,
            headers={"Content-Type": "application/json"},
            auth=op,
        )
        for name, policy in (
            ("unknown_key", {"business_share": 0.4}),
            ("huge", {"lifeline_w": 10**7}),
        ):
            bad = {"options": [{**OPTIONS["options"][0], "policy": policy}, OPTIONS["options"][1]]}
            out[name] = await c.put("/api/community/vote/options", json=bad, auth=op)
        out["offer"] = await c.put("/api/community/vote/options", json=OPTIONS, auth=op)
        out["other_household"] = await c.put(
            f"/api/community/vote/{h2}", json={"option": "business"}, auth=amina
        )
        out["operator_votes"] = await c.put(
            f"/api/community/vote/{h1}", json={"option": "business"}, auth=op
        )
        out["unknown_option"] = await c.put(
            f"/api/community/vote/{h1}", json={"option": "nope"}, auth=amina
        )
        out["cast"] = await c.put(
            f"/api/community/vote/{h1}", json={"option": "lifeline"}, auth=amina
        )
        out["change"] = await c.put(
            f"/api/community/vote/{h1}", json={"option": "business"}, auth=amina
        )
        out["bala"] = await c.put(
            f"/api/community/vote/{h2}", json={"option": "business"}, auth=bala
        )
        out["reoffer"] = await c.put("/api/community/vote/options", json=OPTIONS, auth=op)
        out["result"] = await c.get("/api/community/vote")
        out["own"] = await c.get("/api/community/vote", auth=amina)
        # the next round: the winner is in force
        h = rig.site.households[0].id
        out["plan_before"] = rig.service.site_for_dispatch(rig.clock.now()).service_plan_of(h)
        rig.clock.advance(86_400.0)
        out["next"] = await c.get("/api/community/vote")
        out["plan_after"] = rig.service.site_for_dispatch(rig.clock.now()).service_plan_of(h)
        out["split"] = await c.put(
            f"/api/community/stakes/{h1}",
            json={
                "weights": {rig.site.businesses[0].id: 600_000, rig.site.businesses[1].id: 400_000}
            },
            auth=amina,
        )
        out["bad_split"] = await c.put(
            f"/api/community/stakes/{h1}",
            json={"weights": {rig.site.businesses[0].id: 600_000}},
            auth=amina,
        )
        out["stakes"] = await c.get("/api/stakes", auth=op)
        return out

    rig, out = run_api(tmp_path, calls)
    assert out["resident_offers"].status_code == 403
    assert out["anonymous_offers"].status_code == 401
    for name in ("one_option", "extra_field", "string_value"):
        assert out[name].status_code == 422, name
    assert 400 <= out["nan"].status_code < 500
    assert out["unknown_key"].status_code == 422
    assert "known: lifeline_w, lifeline_wh_per_day" in out["unknown_key"].json()["detail"]
    assert out["huge"].status_code == 422  # no plan the site could hold households to
    assert "power_limit_w" in out["huge"].json()["detail"]
    assert out["offer"].status_code == 200
    assert out["other_household"].status_code == 403
    assert out["operator_votes"].status_code == 403
    assert out["unknown_option"].status_code == 409
    assert "choose one of" in out["unknown_option"].json()["detail"]
    assert out["cast"].status_code == 200
    round_now = out["cast"].json()["round"]
    assert out["cast"].json()["applies_from_round"] == round_now + 1
    assert out["reoffer"].status_code == 409
    result = out["result"].json()
    assert [o["votes"] for o in result["options"]] == [0, 2]  # amina changed her vote
    assert result["voters"] == 2
    assert result["turnout"] == 2 / len(rig.site.households)
    assert result["leading"] == "business"
    assert result["applied"] is None  # not in the round that votes
    assert out["own"].json()["own_vote"] == "business"
    nxt = out["next"].json()
    assert nxt["current_round"] == round_now + 1
    assert nxt["applied"]["name"] == "business"
    assert nxt["applied"]["policy"] == {"lifeline_wh_per_day": 80}
    # Dispatch plans the households on the winner's lifeline from that round on.
    assert out["plan_before"].daily_energy_wh == rig.site.service_plans["basic"].daily_energy_wh
    assert out["plan_after"].daily_energy_wh == 80
    assert out["split"].status_code == 200
    assert out["bad_split"].status_code == 400
    assert "add up to" in out["bad_split"].json()["detail"]
    h1 = rig.site.households[0].id
    assert "=600000" in out["stakes"].json()["choices"][h1]


def test_mtf_per_household(tmp_path):
    async def calls(rig, c):
        await rig.run_for(3)
        op = ("operator", rig.passwords["operator"])
        amina = ("amina", rig.passwords["amina"])
        return {
            "op": await c.get("/api/community/mtf", auth=op),
            "amina": await c.get("/api/community/mtf", auth=amina),
            "anonymous": await c.get("/api/community/mtf"),
            "future": await c.get("/api/community/mtf?day=2031-01-01", auth=op),
            "bad_day": await c.get("/api/community/mtf?day=yesterday", auth=op),
            "ancient": await c.get("/api/community/mtf?day=0001-01-01", auth=op),
        }

    rig, out = run_api(tmp_path, calls)
    assert out["op"].status_code == 200, out["op"].text
    everyone = out["op"].json()
    assert len(everyone["households"]) == len(rig.site.households)
    assert sum(everyone["tier_counts"].values()) == len(rig.site.households)
    # Three morning hours served: energy was metered, so some household reaches tier ≥ 1.
    assert max(h["daily_energy_wh"] for h in everyone["households"]) > 0
    assert max(h["hours_per_day"] for h in everyone["households"]) > 0
    own = out["amina"].json()["households"]
    assert [h["household"] for h in own] == [rig.site.households[0].id]
    assert out["anonymous"].status_code == 401
    assert out["future"].status_code == 400
    assert out["bad_day"].status_code == 422
    assert out["ancient"].status_code == 400
