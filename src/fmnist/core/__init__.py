"""Pure: arrays and config objects in, values out; no paths, environment or services."""
