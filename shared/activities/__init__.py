"""HTTP workflow activities (the write side): request models, one function per activity, the API contract."""
