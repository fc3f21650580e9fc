"""Default query and document instructions, shared by the LangChain and Chroma adapters.

They are those of LangChain's ``HuggingFaceInstructEmbeddings``. This module imports nothing, so
each adapter works with only its own extra installed.
"""

DEFAULT_EMBED_INSTRUCTION = "Represent the document for retrieval: "
DEFAULT_QUERY_INSTRUCTION = "Represent the question for retrieving supporting documents: "
