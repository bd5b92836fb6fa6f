"""SalesIQ: the Zobot webhook (intake and response format), its signature check, and the REST client."""
