"""`POST /payloads` under WSGI (waitress): accept a collection whole into the uploaders'
mailboxes, or refuse it whole. waitress has read the whole body before the app runs, so the
reads here never wait on the network; the checks and decisions are `Intake`'s and
`Admission`'s, shared with the ASGI resource."""

from __future__ import annotations

import falcon

from web.admission import Admission, skippable
from web.intake import Intake


class PayloadsResource:
    def __init__(self, intake: Intake, admission: Admission) -> None:
        self._intake = intake
        self._admission = admission

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        admission = self._admission
        head, refused = admission.before_body(self._intake, req)
        if refused is not None:
            if skippable(head):
                req.bounded_stream.read()
            raise refused
        # Without a Content-Length (a chunked body) only the raw stream knows where it ends;
        # one byte past the limit is enough to refuse it.
        stream = req.bounded_stream if head.content_length is not None else req.stream
        submission = self._intake.read(head, stream.read(self._intake.max_body + 1))
        wait = admission.rates.take(submission.client.tenant, len(submission.data))
        if admission.stored_wait is None:
            admission.accepted(resp, submission, wait)
            return
        tracking = admission.track(submission, wait)
        tracking.wait(admission.stored_wait)
        resp.media = admission.stored_answer(tracking.outcome())
