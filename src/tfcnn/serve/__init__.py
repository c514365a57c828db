"""`tfcnn serve`: a drawing page and HTTP prediction APIs for one trained model.

    app.py        the FastAPI app (page, /predict, /info) and running it (`run_server`)
    tfserving.py  TensorFlow Serving's REST API, /v1/models/...
    kserve.py     the Open Inference Protocol v2 (KServe, Triton), /v2/...
    batching.py   server-side micro-batching of concurrent requests
    model.py      the served model: description, batch predict, input checks
    http.py       errors as {"error": ...}, body-size limit, access log
    schemas.py    the APIs' JSON as pydantic models (the OpenAPI schema)
    static/       the page's HTML, JavaScript and CSS

Importing this package imports nothing heavy; `app` imports FastAPI, and TensorFlow loads
only when a model is wrapped.
"""
