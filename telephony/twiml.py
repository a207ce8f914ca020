"""The TwiML the platform answers the carrier with, built only with the ``twilio`` package's
``VoiceResponse`` (docs/telephony.md, "What the platform answers" and "Refusals")."""

from __future__ import annotations

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

# What a refused caller hears, per reason (the table in docs/telephony.md).
REFUSAL_SENTENCES: dict[str, str] = {
    "unknown_number": "Sorry, this number is not in service. Goodbye.",
    "number_disabled": "Sorry, this number is not taking calls at the moment. Goodbye.",
    "agent_disabled": "Sorry, no one can take your call at the moment. Goodbye.",
    "agent_not_for_phone": "Sorry, no one can take your call at the moment. Goodbye.",
    "tenant_suspended": "Sorry, this service is not available. Goodbye.",
    "tenant_session_limit": "Sorry, all our lines are busy. Please call again later. Goodbye.",
    "platform_at_capacity": "Sorry, all our lines are busy. Please call again later. Goodbye.",
    "duplicate_call": "Sorry, this call is already being answered. Goodbye.",
}
# Any other refusal (one the media stream reports, such as an expired credential).
DEFAULT_REFUSAL = "Sorry, we could not connect your call. Please try again. Goodbye."
# Said when a call's session ended by a fault rather than by anyone's choice.
FAULT_SENTENCE = "Sorry, something went wrong on our side. Please call again. Goodbye."


def refusal_sentence(reason: str) -> str:
    return REFUSAL_SENTENCES.get(reason, DEFAULT_REFUSAL)


def twiml_refusal(*, reason: str) -> str:
    """A polite sentence for ``reason``, then hang up."""
    response = VoiceResponse()
    response.say(refusal_sentence(reason))
    response.hangup()
    return str(response)


def twiml_hangup(*, sorry: bool = False) -> str:
    """Hang up; with an apology first when the call ended by a fault."""
    response = VoiceResponse()
    if sorry:
        response.say(FAULT_SENTENCE)
    response.hangup()
    return str(response)


def twiml_connect(
    *, stream_url: str, action_url: str, token: str, greeting: str = "", resume: bool = False
) -> str:
    """Read ``greeting`` (the carrier's voice), then connect the call to our media stream.

    The credential travels as a ``<Parameter>``: Twilio forbids a query string in a Stream
    url, and hands the parameters to the stream's ``start`` message. When the stream ends,
    Twilio asks ``action_url`` what to do next (``stream-ended``).
    """
    response = VoiceResponse()
    if greeting:
        response.say(greeting)
    connect = Connect(action=action_url, method="POST")
    stream = Stream(url=stream_url)
    # ``resume``: the credential is a session's resume token (a stream cut by a restart).
    stream.parameter(name="resume" if resume else "token", value=token)
    connect.append(stream)
    response.append(connect)
    return str(response)
