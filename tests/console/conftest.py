from tests.api.conftest import api  # noqa: F401  (the in-process service, shared with the API's tests)
