"""Pure computations over data: frames, profiles, schemas, drift (no store imports)."""
