"""The mock pin factory the simulation and mock-pin bins run on."""

from __future__ import annotations

from gpiozero import LED

from smartbin.device.hardware.pins import MOCK_PIN_HISTORY, make_pin_factory


def test_mock_pins_remember_a_bounded_history_of_changes():
    factory = make_pin_factory("mock")
    try:
        led = LED(5, pin_factory=factory)
        for _ in range(10 * MOCK_PIN_HISTORY):
            led.toggle()
        pin = factory.pin(5)
        assert len(pin.states) == MOCK_PIN_HISTORY  # gpiozero's own pin would hold 641 changes
        assert pin.states[-1].state == led.is_lit  # and the newest are the ones kept
        led.close()
    finally:
        factory.close()
