"""Local emulator of the SRP task API: real PNG renders, every callback form, fault injection."""

from local_stack.srp_emulator.collections import SAMPLE_COLLECTIONS_FILE
from local_stack.srp_emulator.faults import FaultConfig
from local_stack.srp_emulator.process import EmulatorControl, SrpEmulatorProcess

SAMPLE_COLLECTION_UID = "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01"
DISABLED_SAMPLE_COLLECTION_UID = "9b7e6d54-2c3a-4f10-8e9d-1a2b3c4d5e6f"
SEED_EXAMPLE_INPUT = {
    "bg": "RareFlare3.png",
    "pants": "stepper",
    "pants_color": "#ffffff",
    "shoe": "4",
    "shoe_color": "#ff0000",
    "platform": "epic",
}

__all__ = [
    "DISABLED_SAMPLE_COLLECTION_UID",
    "SAMPLE_COLLECTIONS_FILE",
    "SAMPLE_COLLECTION_UID",
    "SEED_EXAMPLE_INPUT",
    "EmulatorControl",
    "FaultConfig",
    "SrpEmulatorProcess",
]
