"""The "Try this agent" playground: a staff page that talks to an agent from the browser."""
