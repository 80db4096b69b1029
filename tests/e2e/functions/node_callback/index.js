// CommonJS, callback-style handler.
exports.handler = function (event, context, callback) {
  console.log("node callback handler");
  setTimeout(() => {
    callback(null, { kind: "callback", echo: event, functionName: context.functionName });
  }, 10);
};
