"""Payment platforms: one subpackage per platform (``wechatpay``, ``alipay``), each of the connector shape."""
