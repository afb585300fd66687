"""Field names of the key information (关键信息) that only a county-approved correction changes."""

KEY_INFO_FIELDS = ("name", "gender", "birth_date")
