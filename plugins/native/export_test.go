package native

// LoggerTo is Logger writing to a buffer, for the tests.
var LoggerTo = newLogger
