/** Lines the relay's session holder and the pod's tunnel say to each other on the session's channel. */

/** On stderr, before a relay cuts a session to move the pod to another relay (a drain). */
export const MOVING_LINE = 'pipe2me-session: moving';
