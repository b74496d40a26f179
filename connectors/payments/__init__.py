"""Payment platforms: one subpackage per platform (``wechatpay``), each of the connector shape."""
