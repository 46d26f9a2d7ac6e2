"""Local emulator of the SRP task API: real renders, every callback form, fault injection.

Renders are PNGs, or for the media sample collections a video, a sound and a GLB model.
"""

from local_stack.srp_emulator.catalog import SAMPLE_COLLECTIONS_FILE
from local_stack.srp_emulator.faults import FaultConfig
from local_stack.srp_emulator.process import EmulatorControl, SrpEmulatorProcess

SAMPLE_COLLECTION_UID = "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01"
DISABLED_SAMPLE_COLLECTION_UID = "9b7e6d54-2c3a-4f10-8e9d-1a2b3c4d5e6f"
# Sample collections that render other kinds, each with an input it accepts.
MEDIA_SAMPLES = {
    "video": ("5e2d8c71-4a3b-4c6d-9e8f-0a1b2c3d4e5f", {"bg": "RareFlare3.png", "pants": "baggy"}),
    "sound": ("6f3e9d82-5b4c-4d7e-8f9a-1b2c3d4e5f60", {"bg": "Stripes.png"}),
    "model": ("7a4f0e93-6c5d-4e8f-9a0b-2c3d4e5f6071", {"bg": "Checker.png"}),
}
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
    "MEDIA_SAMPLES",
    "SAMPLE_COLLECTIONS_FILE",
    "SAMPLE_COLLECTION_UID",
    "SEED_EXAMPLE_INPUT",
    "EmulatorControl",
    "FaultConfig",
    "SrpEmulatorProcess",
]
