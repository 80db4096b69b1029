// A handler that throws.
exports.handler = async (event) => {
  throw new TypeError("bad order " + event.order_id);
};
