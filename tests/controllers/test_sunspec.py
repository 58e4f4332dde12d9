"""An independent SunSpec client (pysunspec2) scans the simulated inverter and battery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sunspec2.modbus.client as sunspec_client

from controllers.codec import GarbageValueError, decode, encode
from controllers.registers import PointType, RegisterMapError, load_register_map
from tests.controllers.conftest import Rig, run


def _scan(port: int, unit: int) -> dict[int, list[Any]]:
    device = sunspec_client.SunSpecModbusClientDeviceTCP(
        slave_id=unit, ipaddr="127.0.0.1", ipport=port
    )
    try:
        device.scan()
        return {name: model for name, model in device.models.items() if isinstance(name, int)}
    finally:
        device.close()


def test_pysunspec2_scans_simulated_inverter_and_battery(site):
    port = site.gateways["container"].port

    async def scenario():
        async with Rig(site) as rig:
            await rig.step(30.0)  # the controller sets the limit and the storage rates
            inverter = await asyncio.to_thread(_scan, port, site.pv_inverter.unit_id)
            storage = await asyncio.to_thread(_scan, port, site.battery_inverter.unit_id)
            return inverter, storage

    inverter, storage = run(scenario)
    assert sorted(inverter) == [1, 103, 120, 123]
    assert sorted(storage) == [1, 103, 120, 124]
    (common,) = inverter[1]
    assert common.Mn.cvalue == "LastWatt"
    (nameplate,) = inverter[120]
    assert nameplate.WRtg.cvalue == pytest.approx(site.pv.inverter_ac_capacity_kw * 1000)
    (controls,) = inverter[123]
    assert controls.WMaxLim_Ena.value == 1
    (basic,) = storage[124]
    assert basic.ChaState.cvalue == pytest.approx(50.0, abs=1.0)
    assert basic.StorCtl_Mod.value == 3
    (rating,) = storage[120]
    assert rating.WHRtg.cvalue == pytest.approx(site.battery.energy_capacity_kwh * 1000)


def test_codec_round_trip_and_sentinels():
    storage = load_register_map("sunspec_storage")
    rate = storage.point("124.InWRte")
    assert decode(rate, encode(rate, -42.5, -1), -1, sunspec=True) == -42.5
    assert decode(rate, [0x8000], -1, sunspec=True) is None
    soc = storage.point("124.ChaState")
    with pytest.raises(GarbageValueError, match=r"124\.ChaState"):
        decode(soc, [0x7FFF], -1)
    with pytest.raises(GarbageValueError, match="scale factor"):
        decode(soc, [500], 99)
    meter = load_register_map("lastwatt_meter")
    energy = meter.point("import_wh")
    assert energy.type is PointType.UINT32
    assert decode(energy, encode(energy, 2**32 - 1)) == 2**32 - 1
    with pytest.raises(ValueError, match="does not fit"):
        encode(energy, 2**32)


def test_map_errors_name_the_problem(tmp_path):
    with pytest.raises(RegisterMapError, match="unknown register map 'nope'"):
        load_register_map("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[[points]]\nname = "x"\naddress = 0\ntype = "float99"\n')
    with pytest.raises(RegisterMapError, match="unknown type 'float99'"):
        load_register_map(str(bad))
    with pytest.raises(RegisterMapError, match=r"no point '124\.Nope'"):
        load_register_map("sunspec_storage").point("124.Nope")


def test_controller_never_writes_points_it_does_not_own():
    from controllers.devices import OwnershipError, inverter_profile

    profile = inverter_profile(load_register_map("sunspec_inverter"))
    with pytest.raises(OwnershipError, match="not owned"):
        profile.writes({"123.OutPFSet": 0.9}, {"123.OutPFSet_SF": -3})
