"""Python client for the INSTRUCTOR TorchServe endpoint, with LangChain and Chroma adapters.

    from instructor_client import InstructorClient
    client = InstructorClient("http://127.0.0.1:8080", key_file="key_file.json", concurrency=4)
    vectors = client.embed([("Represent the Science title:", "3D ActionSLAM")])

``instructor_client.langchain`` needs langchain-core; ``instructor_client.chroma`` needs chromadb.
"""

from instructor_client.client import InstructorClient
from instructor_client.errors import (
    AuthorizationError,
    InstructorError,
    InvalidRequestError,
    ServerUnavailableError,
    TokenBudgetExceededError,
)
from instructor_client.keys import KeyFile

__all__ = [
    "AuthorizationError",
    "InstructorClient",
    "InstructorError",
    "InvalidRequestError",
    "KeyFile",
    "ServerUnavailableError",
    "TokenBudgetExceededError",
]
